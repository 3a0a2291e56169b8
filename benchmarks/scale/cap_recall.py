"""HotpotQA-100 recall of the default mode on a scale collection at several hub caps
(`graph.index.max_entity_passages`): how the cap was chosen (questions 0-49 decide, 50-99 are reported).

    python -m benchmarks.scale.cap_recall --size 100000 --caps 500 2000   # -> results/scale-cap-recall.json

The collection is benchmarks/scale's data folder of that size (built by `python -m benchmarks.scale` first); the app
runs on Ray Serve over it once per cap, and every HotpotQA question is asked once (top_k 20, as hotpotqa_recall)."""

from __future__ import annotations

from benchmarks import use_local_env

use_local_env()  # before anything imports Ray

import httpx  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.scale import serve_part  # noqa: E402
from benchmarks.scale.data import DATA  # noqa: E402


def recall_at(folder, cap: int, hotpot: list[dict]) -> dict:
    from graph import build_app

    args = serve_part.app_args(folder)
    args["graph"] = {"index": {"max_entity_passages": cap}}
    with harness.ray_session(attempts=3):
        url = harness.deploy(build_app(args), "cap", attempts=3)
        serve_part._wait(url)
        with httpx.Client(base_url=url, timeout=600) as client:
            r = serve_part.recall_of(client, serve_part.COLLECTION, hotpot, {})
    print(f"cap {cap}: dev {r['dev']}, test {r['test']}, degraded {r['degraded_responses']}", flush=True)
    return {k: r[k] for k in ("dev", "test", "degraded_responses", "p50_ms", "graph_p50_ms")}


def main() -> None:
    parser = harness.cli(__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--caps", type=int, nargs="+", default=[500, 2000])
    args = parser.parse_args()
    folder = DATA / str(args.size)
    if not (folder / "loaded.json").is_file():
        raise SystemExit(f"no collection at {folder}: run python -m benchmarks.scale --sizes {args.size} first")
    _, hotpot = serve_part.questions()
    result = {
        "size": args.size,
        "caps": {str(cap): recall_at(folder, cap, hotpot) for cap in args.caps},
        "command": harness.command(),
        "date": harness.utc_now(),
    }
    harness.write_json("scale-cap-recall.json", result)


if __name__ == "__main__":
    main()
