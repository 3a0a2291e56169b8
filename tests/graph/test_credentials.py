"""The embedded store's per-folder passwords (issue 10, finding 4), without a server."""

from __future__ import annotations

import os
import stat

import pytest

from deployments.graph.store.credentials import CredentialsError, credentials_path, load, load_or_create


def test_made_once_per_folder_private_and_kept(tmp_path):
    first = load_or_create(tmp_path / "a")
    assert stat.S_IMODE(credentials_path(tmp_path / "a").stat().st_mode) == 0o600
    assert load_or_create(tmp_path / "a") == first == load(tmp_path / "a")  # kept across starts
    assert load_or_create(tmp_path / "b").root_password != first.root_password
    assert first.root_password not in repr(first) and first.reader_password not in repr(first)
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_missing_or_exposed_credentials_are_clear_errors(tmp_path):
    with pytest.raises(CredentialsError, match="has not been started"):
        load(tmp_path)
    creds = load_or_create(tmp_path)
    os.chmod(credentials_path(tmp_path), 0o644)
    with pytest.raises(CredentialsError, match="accessible to other users") as info:
        load(tmp_path)
    assert creds.root_password not in str(info.value)
    os.chmod(credentials_path(tmp_path), 0o600)
    credentials_path(tmp_path).write_text("{not json")
    with pytest.raises(CredentialsError, match="cannot read") as info:
        load(tmp_path)
