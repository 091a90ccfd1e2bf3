"""The sending platform: the API key, the create-call client with its retry rules, the outcomes, the
go/no-go gate shared by single and batch connects, and the batch connect."""
