"""Schemathesis against the live OpenAPI schema of the running app (API keys on, sample corpus ingested).

    python -m benchmarks.reliability.fuzz_schema [--max-examples 150] [--seed 1]

Every operation gets up to `max-examples` generated requests (valid and invalid, examples, coverage and
fuzzing phases); the checks are: no 5xx, every status/content type/header/body as the schema documents it,
invalid data rejected with a 4xx, and auth not ignored. Then hand-written bodies that generated cases miss
(NaN, Infinity, 1e400, lone surrogates; a document over the size limit) must all answer a short 4xx. Prints the figures and writes
benchmarks/results/fuzz_schema.json; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks import (
    harness,  # noqa: E402
    use_local_env,  # noqa: E402
)
from benchmarks.harness import ROOT  # noqa: E402

use_local_env()

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
    ]
)
KEY = "fuzz-key"


def run_schemathesis(base: str, key: str, max_examples: int, seed: int, report_dir: Path) -> dict:
    """Runs the CLI against `base`; returns the request and failure counts from its NDJSON event report."""
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base}/openapi.json",
        "-H",
        f"Authorization: Bearer {key}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        # One worker: with several, hypothesis (6.170) intermittently fails parsing its own lambdas in threads
        # (SystemError: AST constructor recursion depth mismatch), a tool error that aborts an operation.
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-shrink",
        "--report",
        "ndjson",
        "--report-dir",
        str(report_dir),
        "--output-sanitize",
        "true",
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - start
    statuses: Counter[str] = Counter()
    per_operation: Counter[str] = Counter()
    failures: list[str] = []
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            for interaction in _interactions(event):
                statuses[str(interaction["status"])] += 1
                per_operation[interaction["label"]] += 1
            failures += _failures(event)
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "requests": sum(statuses.values()),
        "server_errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "statuses": dict(sorted(statuses.items())),
        "requests_per_operation": dict(sorted(per_operation.items())),
        "failures": failures,
        "output": proc.stdout + proc.stderr[-3000:],
    }


# JSON that Python's parser accepts but that is not valid JSON text or Unicode, which generated cases miss:
# non-finite numbers and lone UTF-16 surrogates, in every JSON-body operation; and a document just over the
# size limit, whose 422 must not echo it back.
_BAD_VALUES = ["NaN", "Infinity", "-Infinity", "1e400", '"\\ud800"', '"a\\udfffb"', '"\\ude00\\ud83d"']
_MALFORMED_TEMPLATES = {
    "/v1/retrieve": [
        '{"collection": "x", "query": "rust", "top_k": V}',
        '{"collection": "x", "query": V}',
        '{"query": "rust", "filter": {"year": V}}',
    ],
    "/v1/answer": ['{"collection": "x", "query": "rust", "top_k": V}', '{"query": V, "stream": true}'],
    "/v1/chat/completions": [
        '{"model": "m", "messages": [{"role": "user", "content": V}]}',
        '{"model": "m", "messages": [{"role": "user", "content": "q"}], "temperature": V}',
    ],
    "/v1/ingest": [
        '{"documents": [{"id": V, "text": "t"}]}',
        '{"documents": [{"id": "a", "text": V}]}',
        '{"documents": [{"id": "a", "text": "t", "metadata": {"k": V}}]}',
    ],
    "/v1/graph/query": ['{"query": "RETURN $p AS p", "parameters": {"p": V}}', '{"query": V}'],
}


def run_malformed(base: str, key: str) -> dict:
    """Posts the hand-written malformed bodies; every answer must be a 4xx with a JSON body, and a 422 for a
    200,001-character document must stay short."""
    import httpx

    statuses: Counter[str] = Counter()
    failures = []
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for path, templates in _MALFORMED_TEMPLATES.items():
            for template in templates:
                for value in _BAD_VALUES:
                    body = template.replace("V", value).encode()
                    resp = client.post(path, content=body)
                    statuses[str(resp.status_code)] += 1
                    if not 400 <= resp.status_code < 500:
                        failures.append(f"{path} {body[:120]!r}: {resp.status_code} {resp.text[:200]}")
        big = {"documents": [{"id": "big", "text": "a" * 200_001}]}
        resp = client.post("/v1/ingest", content=json.dumps(big).encode())
        statuses[str(resp.status_code)] += 1
        if resp.status_code != 422 or len(resp.content) > 2_000:
            failures.append(f"/v1/ingest 200,001-character document: {resp.status_code}, {len(resp.content)} bytes")
    return {
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "server_errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "oversized_document_422_bytes": len(resp.content),
        "failures": failures,
    }


def _interactions(event: dict):
    """Request/response pairs recorded in one NDJSON event (schemathesis' ScenarioFinished events)."""
    for value in event.values():
        if not isinstance(value, dict):
            continue
        recorder = value.get("recorder") or {}
        for interaction in (recorder.get("interactions") or {}).values():
            response = interaction.get("response") or {}
            yield {"status": response.get("status_code", 0), "label": recorder.get("label", "?")}


def _failures(event: dict) -> list[str]:
    """Failed checks, and errors of the run itself (which would hide failures)."""
    if "NonFatalError" in event:
        return [f"error: {json.dumps(event['NonFatalError'])[:600]}"]
    out = []
    for value in event.values():
        if not isinstance(value, dict):
            continue
        recorder = value.get("recorder") or {}
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if str(check.get("status")).lower() == "failure":
                    out.append(f"{recorder.get('label')} {check.get('name')} case {case_id}: {json.dumps(check)[:600]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--report-dir", default=None, help="keep schemathesis' NDJSON report here (default: a temp dir)"
    )
    opts = parser.parse_args()

    import httpx

    from deployments.ingress.auth import hash_key
    from tests.fakes import sample_documents
    from tests.openai_server import OpenAIProtocolServer

    with OpenAIProtocolServer() as llm, tempfile.TemporaryDirectory(prefix="graphrag-fuzz-") as tmp:
        args = {
            "data_dir": f"{tmp}/data",
            "chat": {"base_url": llm.base_url, "model": "fuzz"},
            "auth": {"api_key_hashes": [hash_key(KEY)]},
        }
        with harness.local_app(args, "graphrag-fuzz") as base:
            resp = httpx.post(
                f"{base}/v1/ingest", json={"documents": sample_documents()}, headers={"X-API-Key": KEY}, timeout=300
            )
            resp.raise_for_status()
            report = Path(opts.report_dir) if opts.report_dir else Path(tmp) / "report"
            result = run_schemathesis(base, KEY, opts.max_examples, opts.seed, report)
            result["malformed_json"] = run_malformed(base, KEY)
    result.update(
        max_examples=opts.max_examples, seed=opts.seed, checks=CHECKS.split(","), load_average=os.getloadavg()
    )
    harness.write_json("fuzz_schema.json", {k: v for k, v in result.items() if k != "output"})
    print(result.pop("output"))
    print(json.dumps(result, indent=2))
    ok = (
        result["exit_code"] == 0
        and not result["failures"]
        and result["server_errors_5xx"] == 0
        and not result["malformed_json"]["failures"]
    )
    sys.exit(0 if ok and result["requests"] >= 1000 else 1)


if __name__ == "__main__":
    main()
