"""The embedded graph store's passwords: random, one pair per data folder, made at its first start.

The file (mode 0600, next to the databases) holds the root password (the app's own reads and writes) and the
read-only user's password (user Cypher from POST /v1/graph/query). Nothing in the source or the config knows
them; they are never logged, passed on a command line or put in an environment.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from deployments.config import GraphConfig

CREDENTIALS_FILE = "graphrag-store-credentials.json"
ROOT_USER = "root"
# The store user user Cypher runs as: a group that may only read records (see embedded/server.py, _secure).
READER_USER = "graphrag_reader"


class CredentialsError(RuntimeError):
    """The credentials file is missing, unreadable, malformed or readable by others."""


@dataclass(frozen=True)
class StoreCredentials:
    root_password: str = field(repr=False)
    reader_password: str = field(repr=False)

    @property
    def root(self) -> tuple[str, str]:
        return (ROOT_USER, self.root_password)

    @property
    def reader(self) -> tuple[str, str]:
        return (READER_USER, self.reader_password)


def credentials_path(folder: str | Path) -> Path:
    return Path(folder).expanduser().resolve() / CREDENTIALS_FILE


def load_or_create(folder: str | Path) -> StoreCredentials:
    """The folder's credentials; made (random, mode 0600) when the folder has none yet."""
    path = credentials_path(folder)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = {"root": secrets.token_urlsafe(32), "reader": secrets.token_urlsafe(32)}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(fresh, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # atomic and never overwrites: a concurrent first start keeps one pair
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    return load(folder)


def load(folder: str | Path) -> StoreCredentials:
    """The folder's credentials, made by the embedded server's first start."""
    path = credentials_path(folder)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialsError(f"{path} is accessible to other users (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        data = json.loads(path.read_text())
        return StoreCredentials(root_password=str(data["root"]), reader_password=str(data["reader"]))
    except FileNotFoundError:
        raise CredentialsError(
            f"{path} does not exist: the embedded graph store has not been started on this folder"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(f"cannot read {path}: {type(exc).__name__}") from None


def _embedded(config: GraphConfig) -> StoreCredentials:
    if not config.path:
        raise CredentialsError("graph.path (the embedded server's data folder, which holds its credentials) is not set")
    return load(config.path)


def admin_auth(config: GraphConfig) -> tuple[str, str] | None:
    """What the graph stage's own reads and writes authenticate with: root on the embedded server."""
    if config.embedded:
        return _embedded(config).root
    return (config.user, config.password.get_secret_value()) if config.password is not None else None


def reader_auth(config: GraphConfig) -> tuple[str, str] | None:
    """What user Cypher authenticates with: the read-only user; None when an external server has none configured."""
    if config.embedded:
        return _embedded(config).reader
    if config.reader_user is None or config.reader_password is None:
        return None
    return (config.reader_user, config.reader_password.get_secret_value())
