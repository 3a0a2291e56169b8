"""How many requests, at what latency and CPU? Real and simulated stages, autoscaling, profiles, the embedder and the graph index."""
