"""DNS: the client every check shares (its servers, cache, bounded lookups) and the pure record parsers."""
