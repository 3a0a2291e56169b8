"""A local HTTP test double speaking the OpenAI protocol (chat, embeddings, models) and TEI/Cohere rerank.

It is never a model: answers are deterministic functions of the request (chat quotes the first numbered
passage of the prompt with its [n] marker, embeddings are hashed bags of words, rerank scores are term
overlap). Tests script faults (429 + Retry-After, 5xx, slow responses, invalid JSON) per route and read back
the recorded requests with their timestamps.

In-process:   with OpenAIProtocolServer() as srv: srv.base_url; srv.fault("chat", status=429, retry_after=1)
Subprocess:   python -m tests.openai_server --port P   (faults over HTTP: POST /_control/faults,
              GET /_control/requests, POST /_control/reset), or `with OpenAIProtocolServerProcess() as srv:`
              (tests/openai_server_process.py), which exposes the same Python API over those endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.openai_protocol import (
    ROUTES,
    Fault,
    RecordedRequest,
    error_response,
    first_passage,
    hashed_embedding,
    overlap_score,
    route_path,
    words,
)


class OpenAIProtocolServer:
    """The test double; runs uvicorn in a daemon thread bound to `host` (loopback) on a free port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        embedding_dim: int = 64,
        api_key: str | None = None,
        model_suffix: str = "-testdouble",
    ):
        self.host = host
        self.port = port
        self.embedding_dim = embedding_dim
        self.api_key = api_key  # when set, requests must carry "Authorization: Bearer <api_key>"
        self.model_suffix = model_suffix  # the served model name is the requested one plus this
        self._lock = threading.Lock()
        self._faults: dict[str, deque[Fault]] = {p: deque() for p in ROUTES.values()}
        self._records: list[RecordedRequest] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.app = self._build_app()

    # ---- Python control API --------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (".../v1")."""
        return f"{self.root_url}/v1"

    def fault(self, route: str, times: int = 1, **kwargs: Any) -> None:
        """Queue `times` copies of Fault(**kwargs) for the next requests to `route`."""
        self.add_faults(route, [Fault(**kwargs) for _ in range(times)])

    def add_faults(self, route: str, faults: list[Fault]) -> None:
        path = route_path(route)
        with self._lock:
            self._faults[path].extend(faults)

    def pending_faults(self, route: str) -> int:
        with self._lock:
            return len(self._faults[route_path(route)])

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        path = route_path(route) if route else None
        with self._lock:
            return [r for r in self._records if path is None or r.route == path]

    def reset(self) -> None:
        with self._lock:
            for q in self._faults.values():
                q.clear()
            self._records.clear()

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> OpenAIProtocolServer:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="openai-test-double", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the OpenAI test double did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> OpenAIProtocolServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Subprocess mode: run in the calling thread until interrupted."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        sock.listen(128)  # connections queue from now on, so READY is true before uvicorn starts accepting
        print(f"READY {self.root_url}", flush=True)
        server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1)
        )
        server.run(sockets=[sock])

    # ---- HTTP ----------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="OpenAI-protocol test double", docs_url=None, redoc_url=None, openapi_url=None)

        def route(method: str, path: str, handler: Callable[[Any], Any]) -> None:
            async def endpoint(request: Request) -> Response:
                return await self._handle(path, request, handler)

            app.add_api_route(path, endpoint, methods=[method])

        route("POST", ROUTES["chat"], self._chat)
        route("POST", ROUTES["embeddings"], self._embeddings)
        route("GET", ROUTES["models"], self._models)
        route("POST", ROUTES["rerank"], self._tei_rerank)
        route("POST", ROUTES["cohere_rerank"], self._cohere_rerank)

        @app.post("/_control/faults")
        async def add_faults(request: Request) -> dict[str, Any]:
            spec = await request.json()
            items = spec.get("faults") or [{k: v for k, v in spec.items() if k not in ("route", "times")}]
            faults = [Fault(**f) for f in items] * int(spec.get("times", 1))
            self.add_faults(spec["route"], faults)
            return {"queued": len(faults)}

        @app.get("/_control/requests")
        async def list_requests(route: str | None = None) -> list[dict[str, Any]]:
            return [r.to_dict() for r in self.requests(route)]

        @app.get("/_control/faults")
        async def count_faults(route: str) -> dict[str, int]:
            return {"pending": self.pending_faults(route)}

        @app.post("/_control/reset")
        async def reset() -> dict[str, bool]:
            self.reset()
            return {"reset": True}

        return app

    async def _handle(self, path: str, request: Request, handler: Callable[[Any], Any]) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        record = RecordedRequest(
            route=path,
            method=request.method,
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
            t=time.time(),
            mono=time.monotonic(),
        )
        with self._lock:
            self._records.append(record)
            fault = self._faults[path].popleft() if self._faults[path] else None
        record.fault = asdict(fault) if fault else None
        request.scope["testdouble.record"] = record
        response = await self._respond(request, body, handler, fault)
        record.status = response.status_code
        return response

    async def _respond(
        self, request: Request, body: Any, handler: Callable[[Any], Any], fault: Fault | None
    ) -> Response:
        if fault and fault.delay:
            # Sleep in steps, watching the connection: a client that cancels is recorded as disconnected.
            deadline = time.monotonic() + fault.delay
            while (left := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(0.05, left))
                if await request.is_disconnected():
                    self._mark_disconnected(request)
                    return Response(status_code=499)
        if fault and fault.status:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            return error_response(fault.status, f"scripted fault: HTTP {fault.status}", headers, fault.body)
        if fault and fault.invalid_json:
            return Response(b'{"this is": not json', media_type="application/json")
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error_response(401, "missing or wrong API key")
        if request.method == "POST" and not isinstance(body, dict):
            return error_response(400, "the body must be a JSON object")
        try:
            if fault and fault.content is not None and isinstance(body, dict) and "messages" in body:
                return self._scripted_chat(body, fault.content)
            return handler(body)
        except (KeyError, TypeError, ValueError) as exc:
            return error_response(400, f"bad request: {exc!r}")

    def _mark_disconnected(self, request: Request) -> None:
        record = request.scope.get("testdouble.record")
        if record is not None:
            record.disconnected = True

    def _scripted_chat(self, body: dict[str, Any], content: str) -> Response:
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self._served_model(str(body["model"])),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": 0,
                    "completion_tokens": len(words(content)),
                    "total_tokens": len(words(content)),
                },
            }
        )

    # ---- protocol handlers ---------------------------------------------------------------------

    def _served_model(self, requested: str) -> str:
        return f"{requested}{self.model_suffix}"

    def _chat(self, body: dict[str, Any]) -> Response:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        model = self._served_model(str(body["model"]))
        first = first_passage(messages)
        answer = f"{first[1]} [{first[0]}]" if first else "I don't know: no passages were given."
        created = int(time.time())
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        prompt_tokens = sum(len(words(str(m.get("content", "")))) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words(answer)),
            "total_tokens": prompt_tokens + len(words(answer)),
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            return f"data: {json.dumps(payload)}\n\n"

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            for piece in re.findall(r"\S+\s*", answer):
                yield chunk({"content": piece})
            yield chunk({}, "stop")
            if include_usage:
                payload = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(payload)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def _embeddings(self, body: dict[str, Any]) -> Response:
        inputs = body["input"]
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            raise ValueError("input must be a string or a non-empty list of strings")
        dim = int(body.get("dimensions") or self.embedding_dim)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vec = hashed_embedding(text, dim)
            emb: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if as_base64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(words(t)) for t in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model", "")),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _models(self, body: Any) -> Response:
        ids = ["test-chat", "test-embed"]
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": i, "object": "model", "created": 0, "owned_by": "test-double"} for i in ids],
            }
        )

    def _tei_rerank(self, body: dict[str, Any]) -> Response:
        query, texts = body["query"], body["texts"]
        if not isinstance(texts, list) or not texts:
            raise ValueError("texts must be a non-empty list")
        scored = [{"index": i, "score": overlap_score(query, t)} for i, t in enumerate(texts)]
        scored.sort(key=lambda r: -r["score"])  # TEI answers best first
        return JSONResponse(scored)

    def _cohere_rerank(self, body: dict[str, Any]) -> Response:
        query, docs = body["query"], body["documents"]
        if not isinstance(docs, list) or not docs:
            raise ValueError("documents must be a non-empty list")
        texts = [d["text"] if isinstance(d, dict) else d for d in docs]
        results = [{"index": i, "relevance_score": overlap_score(query, t)} for i, t in enumerate(texts)]
        results.sort(key=lambda r: -r["relevance_score"])
        top_n = body.get("top_n")
        if top_n:
            results = results[: int(top_n)]
        return JSONResponse({"id": uuid.uuid4().hex, "results": results, "meta": {"model": body.get("model")}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as 'READY <url>')")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    OpenAIProtocolServer(args.host, args.port, args.embedding_dim, args.api_key).serve_forever()


if __name__ == "__main__":
    main()
