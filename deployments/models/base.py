"""The API models' common base."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # strict: no coercion (0 is not false, "5" is not 5), so a malformed request is a 422, never silently reinterpreted.
    model_config = ConfigDict(extra="forbid", strict=True)
