# Every deployment class lives in this package, so a Serve replica imports it before it starts serving: the
# place to narrow the replica's gRPC listener to the node IP (see throughput.py).
from deployments.throughput import bind_replica_grpc_to_node_ip

bind_replica_grpc_to_node_ip()
