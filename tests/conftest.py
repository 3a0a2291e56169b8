import os
import sys

from deployments.local_env import use_local_env

# Loopback-only Ray, no auth prompts, no hub downloads: set before anything imports Ray or transformers. The fast
# data plane is set by `start_local` when a test starts the app, after this process has imported Ray Serve, so the
# tests' own handles keep Serve's default routing (a thread of their own, usable from synchronous code).
use_local_env(fast_path=False)

# One real ArcadeDB Bolt server per test session, shared by every module that asks for it.
# The session's result is final once pytest has reported it. Native extensions the suite loads (torch, Qdrant Edge,
# gRPC, Ray's core worker) once crashed during interpreter teardown *after* "413 passed" (SIGSEGV, make failed);
# leave with pytest's own exit status (5 for "no tests" included) instead of running that teardown.
import pytest  # noqa: E402

from tests.arcadedb_fixture import arcadedb_server, bolt_uri, graph_config  # noqa: E402,F401


def pytest_sessionfinish(session, exitstatus):
    session.config._final_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    status = getattr(config, "_final_exitstatus", None)
    if status is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
