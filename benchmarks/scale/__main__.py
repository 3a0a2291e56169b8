"""python -m benchmarks.scale: see benchmarks/scale/__init__.py."""

from __future__ import annotations

from benchmarks import use_local_env

use_local_env()  # before anything imports Ray or transformers

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import RESULTS  # noqa: E402
from benchmarks.scale import __doc__ as DOC  # noqa: E402
from benchmarks.scale import data  # noqa: E402
from benchmarks.scale.serve_part import measure, one_part  # noqa: E402

FIGURES = (
    "graph_search_cpu_ms_p50", "graph_search_p50_ms_c1", "graph_searches_per_s_c32", "retrieve_p50_ms_c1",
    "retrieve_qps_c32", "ingest_chunks_per_s", "work_raw_chunks_per_s", "default_test_recall@5", "hybrid_test_recall@5",
)  # fmt: skip


def search_cpu(n: int, data_dir: Path) -> dict:
    """The search CPU of one size alone (a full run measures one size at a time): benchmarks/scale/search_cpu.py."""
    return search_cpu_all({n: data_dir})[0][n]


def search_cpu_all(folders: dict[int, Path], one_by_one: bool = False) -> tuple[dict[int, dict], dict]:
    from benchmarks.scale import search_cpu as measure_cpu

    return measure_cpu.measure(folders, one_by_one=one_by_one)


def bulk_import(n: int, folder: Path, rows: int, vector_only: bool = False) -> dict:
    """benchmarks.speed.bulk_import into the size's collection (rows of the 10k corpus under new ids, deleted
    again): both stores with extraction, and the vector store alone, against the extractor's own rate;
    `vector_only`: the vector store alone (its `bulk_vector_*` figures, from a file of its own)."""
    out = f"bulk_vector-{n}.json" if vector_only else f"bulk_import-{n}.json"
    command = [sys.executable, "-m", "benchmarks.speed.bulk_import", "--rows", str(rows), "--into", str(folder)]
    subprocess.run([*command, "--out", out, *(["--skip-import"] if vector_only else [])], cwd=harness.ROOT, check=True)
    found = json.loads((RESULTS / out).read_text())
    if vector_only:
        return {"bulk_vector_chunks_per_s": found["bulk_vector_chunks_per_s"], "bulk_vector_file": f"results/{out}"}
    keys = ("bulk_import_chunks_per_s", "extractor_chunks_per_s", "import_vs_extractor", "bulk_vector_chunks_per_s")
    return {**{k: found[k] for k in keys}, "bulk_import_file": f"results/{out}"}


def plot(sizes: dict) -> None:
    """One panel per figure (from 0, so a flat line looks flat); recall@5 of both modes in the last."""
    plt = harness.pyplot()
    ns = sorted(int(n) for n in sizes)
    fig, axes = plt.subplots(3, 3, figsize=(12, 9))
    for figures in sizes.values():
        figures["graph_rss_mb"] = figures.get("rss_mb", {}).get("Graph")
    panels = [(name, (name,)) for name in FIGURES[:-2]] + [("test recall@5", FIGURES[-2:])]
    panels.append(("Graph replica rss_mb", ("graph_rss_mb",)))
    for ax, (title, names) in zip(axes.flat, panels):
        for name in names:
            xs = [n for n in ns if sizes[str(n)].get(name) is not None]
            ax.plot(xs, [sizes[str(n)][name] for n in xs], "o-", label=name.split("_")[0])
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("chunks")
        if len(names) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    harness.save_figure(fig, "scale.png")


def main() -> None:
    parser = harness.cli(DOC)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seconds", type=float, default=20.0, help="per load level")
    parser.add_argument("--plot-only", action="store_true", help="draw scale.png from scale.json")
    parser.add_argument(
        "--only",
        choices=("replica", "recall", "search", "bulk_vector"),
        help="measure one part again, into the sizes' entries (serve_part; search: search_cpu, no Ray; bulk_vector:"
        " the vector store alone, --bulk-rows rows)",
    )
    parser.add_argument(
        "--bulk-rows", type=int, default=0, help="then bulk-import this many rows into each size's collection"
    )
    parser.add_argument(
        "--out", type=Path, help="with --only search: write the whole result here instead of results/scale.json"
    )
    parser.add_argument(
        "--sequential", action="store_true", help="with --only search: the sizes one after another (the former way)"
    )
    args = parser.parse_args()
    path = RESULTS / "scale.json"
    result = json.loads(path.read_text()) if path.exists() else {"sizes": {}}
    if args.plot_only:
        plot(result["sizes"])
        return
    if args.only == "search":  # every size loaded, then measured block-interleaved (search_cpu.py)
        search_again(result, args.sizes, args.sequential)
        harness.write_json(args.out or "scale.json", result)
        return
    for n in args.sizes:
        folder = data.build(n)
        if args.only:
            if args.only == "bulk_vector":
                again = bulk_import(n, folder, args.bulk_rows or 10_000, vector_only=True)
            else:
                again = one_part(folder, args.only)
            again[f"{args.only}_again"] = {"command": harness.command(), "date": harness.utc_now()}
            result["sizes"][str(n)].update(again)
            harness.write_json("scale.json", result)
            print(json.dumps(again, indent=2), flush=True)
            continue
        load_before = os.getloadavg()
        figures = measure(n, folder, args.seconds)
        figures.update(search_cpu(n, folder))
        figures["graph_search_cpu_ms_p50_alone"] = figures["graph_search_cpu_ms_p50"]  # this size by itself
        figures["loaded"] = json.loads((folder / "loaded.json").read_text())
        figures["load_average_before"] = [round(x, 2) for x in load_before]
        figures["command"], figures["date"] = harness.command(), harness.utc_now()
        result["sizes"][str(n)] = figures
        harness.write_json("scale.json", result)  # before the bulk import: a failure there keeps the rest
        if args.bulk_rows:
            figures.update(bulk_import(n, folder, args.bulk_rows))
            harness.write_json("scale.json", result)
        print(json.dumps({k: figures.get(k) for k in FIGURES}, indent=2), flush=True)
    if not args.only and len(result["sizes"]) > 1:  # the figures of record: every size's, from the same seconds
        search_again(result, sorted({*args.sizes, *map(int, result["sizes"])}))
        harness.write_json("scale.json", result)
    plot(result["sizes"])


def search_again(result: dict, sizes: list[int], one_by_one: bool = False) -> None:
    """Every size's search CPU measured again in one process, block-interleaved (search_cpu.py), into `result`
    with the ratio of the largest size's p50 to the smallest's: sizes measured minutes apart move with the machine
    (1M / 10k 1.78-2.27x that way on one code, 1.89-1.92x interleaved)."""
    found, ratio = search_cpu_all({n: data.build(n) for n in sizes}, one_by_one)
    for n, again in found.items():
        again["search_again"] = {"command": harness.command(), "date": harness.utc_now()}
        result["sizes"][str(n)].update(again)
    if ratio:
        result["graph_search_cpu_ratio"] = {**ratio, "command": harness.command(), "date": harness.utc_now()}
    print(json.dumps({"sizes": found, "graph_search_cpu_ratio": ratio}, indent=2), flush=True)


if __name__ == "__main__":
    main()
