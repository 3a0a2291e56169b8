"""Command-line tools over the HTTP API (`graphrag-ingest`)."""
