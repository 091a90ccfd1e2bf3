"""DNS: the client every check shares (resolver, cache, bounded lookups) and the pure record parsers."""
