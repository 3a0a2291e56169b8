"""The `auth` section of the one typed config (deployments/config/): API keys as SHA-256 digests, their scopes
and collection allow-lists. Checked by deployments/ingress/auth.py."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployments.models import COLLECTION_PATTERN


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _hex_digest(h: str, where: str) -> str:
    if len(h) != 64 or any(c not in "0123456789abcdef" for c in h.lower()):
        raise ValueError(f"{where} holds SHA-256 hex digests (64 hex characters), never the keys")
    return h.lower()


# read: retrieve, answer, chat completions, collection stats, entities; write: ingest, delete;
# admin: POST /v1/graph/query, arbitrary read Cypher over every collection.
KeyScope = Literal["read", "write", "admin"]
ALL_SCOPES: tuple[KeyScope, ...] = ("read", "write", "admin")


class ApiKey(_Section):
    """One API key: its digest, what it may do, and (optionally) the only collections it may touch."""

    sha256: str = Field(description="SHA-256 hex digest of the key.")
    scopes: list[KeyScope] = Field(
        min_length=1, description="read (retrieve/answer/chat), write (ingest/delete), admin (graph query)."
    )
    collections: list[str] | None = Field(None, description="Allow-list of collections; absent: every collection.")
    name: str | None = Field(None, max_length=64, description="A label for the logs (never the key).")

    @field_validator("sha256")
    @classmethod
    def _digest(cls, v: str) -> str:
        return _hex_digest(v, "auth.keys[].sha256")

    @field_validator("collections")
    @classmethod
    def _collection_names(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            if not re.fullmatch(COLLECTION_PATTERN, name):
                raise ValueError(f"auth.keys[].collections: {name!r} is not a collection name ({COLLECTION_PATTERN})")
        return v

    @model_validator(mode="after")
    def _admin_sees_everything(self) -> ApiKey:
        if "admin" in self.scopes and self.collections is not None:
            raise ValueError(
                "auth.keys[]: the admin scope runs graph queries over every collection; a key limited to "
                "collections cannot have it"
            )
        return self


class AuthConfig(_Section):
    """API keys, stored as SHA-256 hex digests only (`python -m deployments.ingress.auth hash` prints one).
    No key at all: open mode, for local use (`/readyz` says `"auth": "open"`)."""

    api_key_hashes: list[str] = Field(
        default_factory=list, description="Full-access keys (every scope, every collection)."
    )
    keys: list[ApiKey] = Field(
        default_factory=list, description="Keys with scopes and an optional collection allow-list."
    )

    @field_validator("api_key_hashes")
    @classmethod
    def _hex_digests(cls, v: list[str]) -> list[str]:
        return [_hex_digest(h, "auth.api_key_hashes") for h in v]

    @model_validator(mode="after")
    def _one_entry_per_key(self) -> AuthConfig:
        digests = self.api_key_hashes + [k.sha256 for k in self.keys]
        if len(set(digests)) != len(digests):
            raise ValueError("auth: a key digest appears twice (in api_key_hashes or keys); give each key one entry")
        return self

    @property
    def open(self) -> bool:
        return not self.api_key_hashes and not self.keys
