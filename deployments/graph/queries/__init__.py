"""User-facing graph queries: read-only user Cypher (static guard + read-only store user) and the entity explorer."""
