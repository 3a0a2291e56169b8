"""Entity and relation extraction from a chunk: offline (the default, no model) or a race of LLM providers."""
