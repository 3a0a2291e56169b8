"""The bulk path on a real (one-node, one-CPU) Ray: a pinned worker per node, every row's documents handed to the
writer once, in groups the API accepts. The two-node figures are a benchmark (benchmarks/cluster/cluster_ingest)."""

from __future__ import annotations

import pytest

from deployments.bulk.cluster import alive_nodes, spread, start_workers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_node(tmp_path_factory):
    import ray

    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield
    ray.shutdown()


def test_every_rows_documents_reach_the_writer_once_in_groups_the_api_accepts(ray_node, tmp_path):
    import ray

    rows = [{"id": f"d{i}", "text": f"Alice Smith founded Acme {i} in Berlin. It builds robots."} for i in range(300)]
    [node] = alive_nodes()
    workers = start_workers({"data_dir": str(tmp_path)}, [node])
    groups: list[list[dict]] = []
    try:
        report = spread(rows, groups.append, workers, batch_rows=50, write_documents=128)
        computed = spread(rows[:10], None, workers)
    finally:
        for w in workers:
            ray.kill(w)
    ids = [d["id"] for g in groups for d in g]
    assert sorted(ids) == sorted(r["id"] for r in rows) and report.rows == report.documents == 300
    assert all(len(g) <= 256 for g in groups) and all(len(g) >= 128 for g in groups[:-1])
    assert all(len(d["vector"]) == 384 and d["extraction"]["entities"] for g in groups for d in g)
    assert computed.documents == 10  # compute only: counted, not written
