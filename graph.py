"""The typed app builder: one validated `AppConfig` → the Serve deployment graph.

    serve run graph:build_app chat.base_url=http://127.0.0.1:8080/v1 retrieval.top_k=5
    serve run configs/local.yaml          # import_path: graph:build_app, args: {...}

`python graph.py demo` runs the offline demo (see README).
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from deployments.chat.deployment import Chat
from deployments.config import AppConfig
from deployments.embedder.deployment import Embedder
from deployments.graph.deployment import Graph
from deployments.graph.embedded.deployment import BoltServer
from deployments.ingress.deployment import Ingress
from deployments.reranker.deployment import Reranker
from deployments.vector.deployment import Vector


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Serve's application builder: validates `args` once, here, and derives every deployment's options."""
    return build_graph(AppConfig.from_args(args))


def build_graph(config: AppConfig) -> Application:
    d = config.deployments
    embedder = Embedder.options(**d.embedder.serve_options()).bind(config.embedder)
    vector = Vector.options(**d.vector.serve_options()).bind(config.vector, embedder)
    if config.graph.embedded:
        # The app owns the embedded Bolt server; Graph replicas ask it for its URI and reach it over Bolt like any Neo4j.
        bolt = BoltServer.options(**d.bolt_server.serve_options()).bind(config.graph)
        graph = Graph.options(**d.graph.serve_options()).bind(config.graph, bolt, vector)
    else:
        graph = Graph.options(**d.graph.serve_options()).bind(config.graph, None, vector)
    reranker = Reranker.options(**d.reranker.serve_options()).bind(config.reranker, embedder, vector)
    chat = Chat.options(**d.chat.serve_options()).bind(config.chat)
    return Ingress.options(**d.ingress.serve_options()).bind(config, embedder, vector, graph, reranker, chat)


def load_serve_config(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first application's `args` and the `http_options` of a Serve YAML."""
    import yaml

    with open(path) as f:
        serve_config = yaml.safe_load(f)
    app = serve_config["applications"][0]
    if app.get("import_path") != "graph:build_app":
        raise ValueError(f"{path}: expected import_path graph:build_app, got {app.get('import_path')!r}")
    return app.get("args") or {}, serve_config.get("http_options") or {}


def start_local(args: dict[str, Any], host: str = "127.0.0.1", port: int = 8000, name: str = "graphrag") -> str:
    """Starts a local Ray (loopback, no dashboard) and the app behind Serve's HTTP ingress (HAProxy on Ray's
    throughput-optimized data plane unless GRAPHRAG_SERVE_THROUGHPUT=0); returns its base URL."""
    start_ray(host, port)
    return deploy_local(args, host, port, name)


def start_ray(host: str = "127.0.0.1", port: int = 8000) -> None:
    """A local Ray whose node processes a signal to our process group does not reach (deployments/lifetime.py):
    the driver stops them, after Serve. An HAProxy a crash left on `port` is stopped; any other holder is named."""
    import ray

    from deployments.lifetime import claim_port, node_in_own_process_group
    from deployments.local_env import use_local_env

    use_local_env()
    if not ray.is_initialized():
        claim_port(host, port)
        with node_in_own_process_group():
            ray.init(include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False)


def deploy_local(args: dict[str, Any], host: str, port: int, name: str = "graphrag") -> str:
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(args), name=name, route_prefix="/")
    return f"http://{host}:{port}"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="graphrag-serve: run the app locally.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="serve the embedded default, ingest the sample corpus, answer a question")
    demo.add_argument("--config", default="configs/local.yaml")
    demo.add_argument(
        "--question",
        default="Which engine stores the knowledge graph, and which protocol does the graph stage use to reach it?",
    )
    demo.add_argument("--no-wait", action="store_true", help="exit after the answer instead of serving until Ctrl-C")
    sub.add_parser(
        "env",
        help="print the exports of Ray Serve's fast path and of stopping on SIGTERM, for `ray start` / `serve run` shells",
    )
    opts = parser.parse_args()
    if opts.command == "env":
        import shlex

        from deployments.lifetime import hook_env
        from deployments.throughput import throughput_env

        print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in {**throughput_env(), **hook_env()}.items()))
        return

    args, http = load_serve_config(opts.config)
    run_demo(args, http.get("host", "127.0.0.1"), int(http.get("port", 8000)), opts.question, wait=not opts.no_wait)


def run_demo(args: dict[str, Any], host: str, port: int, question: str, wait: bool) -> None:
    """Serves the app, ingests configs/sample/*.md over HTTP, prints one cited answer, keeps serving."""
    import json
    import time
    from pathlib import Path

    import httpx
    import ray
    from ray import serve

    from deployments.lifetime import PortTaken, stop_on_signals

    print(f"starting Ray Serve and the graphrag app on http://{host}:{port} ...", flush=True)
    try:
        start_ray(host, port)
        # From here SIGTERM (docker stop, systemd) takes Ctrl-C's path: Serve drains and stops, then Ray.
        stop_on_signals()
        base = deploy_local(args, host, port)
        with httpx.Client(base_url=base, timeout=300) as client:
            docs = [
                {"id": path.stem, "text": path.read_text(), "metadata": {"source": str(path)}}
                for path in sorted(Path(__file__).parent.joinpath("configs", "sample").glob("*.md"))
            ]
            started = time.perf_counter()
            ingest = client.post("/v1/ingest", json={"collection": "demo", "documents": docs})
            ingest.raise_for_status()
            print(f"ingested {json.dumps(ingest.json())} in {time.perf_counter() - started:.1f}s", flush=True)
            answer = client.post(
                "/v1/answer", json={"collection": "demo", "query": question, "top_k": 5, "mode": "hybrid+graph"}
            )
            answer.raise_for_status()
            body = answer.json()
            print(f"\nQ: {question}\nA ({body['model']}): {body['answer']}\n")
            for c in body["citations"]:
                hit = next(h for h in body["hits"] if h["chunk_id"] == c["chunk_id"])
                print(f"  [{c['n']}] {c['chunk_id']}  score={hit['score']:.3f}  sources={hit['sources']}")
            print(
                f"  graph: {len(body['graph']['nodes'])} nodes, {len(body['graph']['edges'])} edges; degraded: {body['degraded']}"
            )
            timings = {k: v for k, v in body["timings"].items() if v}
            print(
                "  timings (ms): "
                + ", ".join(f"{k} +{v['start_ms']:.0f}/{v['duration_ms']:.0f}" for k, v in timings.items())
            )
        if wait:
            print(
                f"\nserving at {base} (curl examples in README.md); web page: {base}/ui/ ; Ctrl-C to stop", flush=True
            )
            while True:
                time.sleep(3600)
    except PortTaken as exc:
        raise SystemExit(f"graphrag: {exc}") from None
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()


if __name__ == "__main__":
    main()
