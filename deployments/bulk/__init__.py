"""Bulk ingest that grows with the cluster: workers on every node chunk, embed and extract (worker.py), the
store node writes what they send through /v1/ingest's own path (cluster.py)."""
