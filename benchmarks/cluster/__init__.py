"""Several Ray nodes on this machine: placement, a node lost under load, a node rejoining."""
