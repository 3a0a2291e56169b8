"""The Graph replicas' in-memory passage–entity index and its walk (Personalized PageRank), kept current with the store."""
