"""How the app's processes end with it, and what a start finds left over from a crash.

SIGTERM (docker stop, systemd, Kubernetes) takes the same orderly path as Ctrl-C. The driver that starts Ray
(`python graph.py demo`, `serve run`) spawns Ray's node processes (GCS, raylet, and through the raylet the agents) in
its own process group. Ray blocks SIGINT in them, so Ctrl-C to the group reaches only the driver, which stops Serve
(draining) and then Ray; SIGTERM it does not block, so the same signal killed the raylet under the driver, whose
orderly stop then timed out, and HAProxy (a child of a Serve worker, in that worker's process group) outlived it
all, still holding the HTTP port. `node_in_own_process_group` starts the node processes in process groups of their
own (they still die with the driver: Ray ties them to it with the kernel's parent-death signal), and
`stop_on_signals`, installed once `ray.init` returned (Ray's core worker installs a SIGTERM handler of its own),
turns SIGTERM in the driver into KeyboardInterrupt. `serve run` is not our code: `runtime_env_hook`
(RAY_RUNTIME_ENV_HOOK, exported by `python graph.py env`) does both inside its `ray.init`.

The helpers the app starts die with their parent whatever kills it: HAProxy by the kernel's parent-death signal
(`die_with_parent`, set by graphrag-haproxy), the Bolt server by its own watchdog. Each leaves a pid file, so a
start that finds one still running after a crash can prove it is ours (pid file + command line + what it holds)
before stopping it, and names any other holder instead of failing obscurely.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("graphrag.lifetime")

PID_DIR = Path(tempfile.gettempdir()) / "graphrag-serve"  # HAProxy pid files, by HTTP port
_PR_SET_PDEATHSIG = 1


class PortTaken(RuntimeError):
    """A port the app needs is held by a process that is not a leftover of ours."""


# ---- signals -----------------------------------------------------------------------------------


def _own_group_popen():
    """Ray's Popen for node processes, and one that gives each its own process group. Only where the kernel ties
    them to the driver (Linux): elsewhere Ray's reaper finds them by the driver's process group, so nothing changes."""
    from ray._private import services
    from ray._private.utils import detect_fate_sharing_support

    original = services.ConsolePopen
    if not detect_fate_sharing_support():
        return services, original, original

    class OwnGroupPopen(original):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("process_group", 0)
            super().__init__(*args, **kwargs)

    return services, original, OwnGroupPopen


@contextmanager
def node_in_own_process_group() -> Iterator[None]:
    """Around `ray.init`: the node processes it starts get process groups of their own."""
    services, original, own_group = _own_group_popen()
    services.ConsolePopen = own_group
    try:
        yield
    finally:
        services.ConsolePopen = original


_stopping: list[int] = []  # the signal that started the stop, once one has


def _interrupt(signum: int, frame: object) -> None:
    # A SIGTERM after the first signal is ignored: make forwards the group's SIGTERM to its child, and a supervisor
    # repeats it, but both escalate with SIGKILL; a second KeyboardInterrupt would abort Serve's drain half-way.
    # A second Ctrl-C still interrupts the stop, as an operator pressing it twice means.
    if _stopping and signum == signal.SIGTERM:
        log.warning("already stopping: SIGTERM again ignored (SIGKILL stops at once)")
        return
    _stopping.append(signum)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def stop_on_signals() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt in the main thread, so the driver's Ctrl-C path (Serve, then Ray)
    runs for both (SIGINT too: a shell that starts a job in the background leaves SIGINT ignored)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def runtime_env_hook(runtime_env: dict | None) -> dict | None:
    """RAY_RUNTIME_ENV_HOOK: called by `ray.init` in a driver (e.g. `serve run`) before it starts Ray's node; the
    node gets its own process groups, and once `ray.init` is done SIGTERM stops the driver like Ctrl-C. Returns
    `runtime_env` unchanged."""
    import threading

    from ray._private import worker

    if threading.current_thread() is threading.main_thread():
        services, original, own_group = _own_group_popen()
        services.ConsolePopen = own_group

        def after_init() -> None:
            services.ConsolePopen = original
            stop_on_signals()

        worker._post_init_hooks.append(after_init)
    return runtime_env


def hook_env() -> dict[str, str]:
    """For a shell that runs `serve run` (`python graph.py env` prints it): SIGTERM stops it like Ctrl-C."""
    return {"RAY_RUNTIME_ENV_HOOK": f"{__name__}.runtime_env_hook"}  # Ray loads it by dotted path


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Linux: the kernel sends `sig` to this process (kept across exec) when its parent dies."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


# ---- processes and ports -----------------------------------------------------------------------


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def tcp_listeners() -> dict[int, set[str]]:
    """Listening TCP port -> socket inodes, from /proc/net (IPv4 and IPv6)."""
    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A":  # TCP_LISTEN
                found.setdefault(int(cols[1].rsplit(":", 1)[1], 16), set()).add(cols[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listener_pids(port: int) -> list[int]:
    """The processes (readable by us) holding a listening socket on `port`."""
    inodes = tcp_listeners().get(port)
    if not inodes:
        return []
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and socket_inodes(int(p.name)) & inodes]


def terminate(pid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive(pid):
            return


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---- HAProxy -----------------------------------------------------------------------------------


def haproxy_pid_file(port: int) -> Path:
    return PID_DIR / f"haproxy-{port}.pid"


def write_haproxy_pid_file(port: int) -> None:
    """By graphrag-haproxy just before it execs HAProxy (same pid)."""
    PID_DIR.mkdir(parents=True, exist_ok=True)
    haproxy_pid_file(port).write_text(f"{os.getpid()}\n")


def orphaned_haproxy(port: int) -> int | None:
    """The pid of an HAProxy of ours left on `port` by an earlier run: named by the port's pid file, running the
    HAProxy binary, listening on `port`, and no longer a child of a Serve HAProxy manager. Else None."""
    pid = read_pid(haproxy_pid_file(port))
    if pid is None or not alive(pid) or pid not in listener_pids(port):
        return None
    argv = cmdline(pid)
    if not argv or not argv[0].endswith("/haproxy"):
        return None
    parent = parent_pid(pid)
    manager = cmdline(parent)[:1] if parent and parent > 1 else []
    return None if manager and manager[0].startswith("ray::HAProxyManager") else pid


def claim_port(host: str, port: int) -> None:
    """Before Serve binds `host:port`: stop an HAProxy of ours an earlier crash left there (saying so), or raise
    PortTaken naming whoever else holds it."""
    host = host.strip("[]") if host not in ("*", "") else "0.0.0.0"
    holders = listener_pids(port)
    if not holders and not _bind_fails(host, port):
        return
    orphan = orphaned_haproxy(port)
    if orphan is not None:
        log.warning(
            "HAProxy pid %d, left by an earlier run of this app, still listens on port %d: stopping it", orphan, port
        )
        print(
            f"graphrag: HAProxy pid {orphan} (left by an earlier run) still listens on port {port}: stopping it",
            flush=True,
        )
        terminate(orphan, timeout_s=5.0)
        holders = listener_pids(port)
        if not holders and not _bind_fails(host, port):
            return
    named = ", ".join(f"pid {p} ({' '.join(cmdline(p))[:100]})" for p in holders) or "a process we cannot see"
    raise PortTaken(f"{host}:{port} is in use by {named}; stop it or choose another http_options.port")


def _bind_fails(host: str, port: int) -> bool:
    import socket  # only here

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
