"""The OpenAI-protocol test double (tests/openai_server.py) in a subprocess, for Serve replicas in other
processes: started with `python -m tests.openai_server`, scripted over its /_control endpoints."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from tests.openai_protocol import Fault, RecordedRequest


class OpenAIProtocolServerProcess:
    """The same test double in a subprocess (for Serve replicas in other processes), scripted over HTTP."""

    def __init__(self, port: int = 0, embedding_dim: int = 64, api_key: str | None = None):
        self._args = ["--port", str(port), "--embedding-dim", str(embedding_dim)]
        if api_key:
            self._args += ["--api-key", api_key]
        self._proc: subprocess.Popen[str] | None = None
        self.root_url = ""

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def start(self) -> OpenAIProtocolServerProcess:
        root = Path(__file__).resolve().parents[1]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.openai_server", *self._args],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()  # "READY http://127.0.0.1:P"
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the OpenAI test double subprocess did not start: {line!r}")
        self.root_url = line.split(" ", 1)[1]
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None

    def __enter__(self) -> OpenAIProtocolServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def fault(self, route: str, times: int = 1, **kwargs: Any) -> None:
        self._post("/_control/faults", {"route": route, "times": times, **kwargs})

    def add_faults(self, route: str, faults: list[Fault]) -> None:
        self._post("/_control/faults", {"route": route, "faults": [asdict(f) for f in faults]})

    def pending_faults(self, route: str) -> int:
        return httpx.get(f"{self.root_url}/_control/faults", params={"route": route}).json()["pending"]

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        params = {"route": route} if route else {}
        resp = httpx.get(f"{self.root_url}/_control/requests", params=params)
        resp.raise_for_status()
        return [RecordedRequest(**r) for r in resp.json()]

    def reset(self) -> None:
        self._post("/_control/reset", {})

    def _post(self, path: str, payload: dict[str, Any]) -> None:
        httpx.post(f"{self.root_url}{path}", json=payload).raise_for_status()
