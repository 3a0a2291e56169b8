"""The `backup` section: where the admin snapshot/restore routes may read and write."""

from __future__ import annotations

from deployments.config.section import Section


class BackupConfig(Section):
    # The only folder the admin snapshot/restore routes read or write: a request names a snapshot inside it, so
    # an admin key cannot make the server write or read anywhere else.
    root: str | None = None  # default: <data_dir>/backups
