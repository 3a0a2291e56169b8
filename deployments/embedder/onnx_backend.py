"""MiniLM through ONNX Runtime: the shipped sentence-transformers weights, exported locally, run without torch.

On first start the BERT module of the local weights is exported with `torch.onnx.export` into
`<data_dir>/models/` (a temporary file renamed into place, so a crash never leaves half a model); the file name
carries a hash of the weights and of the export settings, so new weights get a new export. Later starts load
that file with onnxruntime and the tokenizer with `tokenizers`, and never import torch. Mean pooling and
normalisation run in numpy, as sentence-transformers does them (its Pooling + Normalize modules).
Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from deployments.config import EmbedderConfig
from deployments.embedder.local_model import available_cpus, resolve_model_path
from deployments.errors import StageError

log = logging.getLogger(__name__)

STAGE = "embed"
# Bumped when the export below changes (inputs, outputs, opset): the cached file name changes with it.
_EXPORT_VERSION = "bert-last-hidden-state-opset17-v1"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _weights_hash(model_dir: Path) -> str:
    """Hash of what the export depends on: the weights, the model config and the export settings."""
    digest = hashlib.sha256(_EXPORT_VERSION.encode())
    for name in ("config.json", "model.safetensors"):
        with open(model_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _check_mean_pooling(model_dir: Path) -> None:
    """This backend reproduces mean pooling + normalisation only; refuse a model that pools otherwise."""
    pooling = model_dir / "1_Pooling" / "config.json"
    if pooling.is_file():
        cfg = json.loads(pooling.read_text())
        if not cfg.get("pooling_mode_mean_tokens") or any(
            cfg.get(k)
            for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
        ):
            raise ValueError(f"{model_dir}: the onnx backend implements mean pooling only, got {cfg}")


def _max_seq_length(model_dir: Path) -> int:
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
    return 256


def export_onnx(model_dir: Path, target: Path) -> Path:
    """Exports the BERT module of `model_dir` to `target` (atomically). Needs torch and transformers."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    class LastHidden(torch.nn.Module):
        # transformers' forward takes many keyword arguments: export exactly the three inputs, one output.
        def __init__(self, bert: Any):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    model = LastHidden(AutoModel.from_pretrained(str(model_dir))).eval()
    sample = AutoTokenizer.from_pretrained(str(model_dir))(
        ["an export sample", "a longer export sample text"], padding=True, return_tensors="pt"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns about shape checks it freezes; they hold for every input (mask width == sequence).
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                tuple(sample[name] for name in _INPUTS),
                tmp,
                input_names=list(_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, "last_hidden_state")},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter: no onnxscript dependency, stable for BERT
            )
        os.replace(tmp, target)  # atomic: concurrent replicas each export, the last rename wins, all identical
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def onnx_model_path(model_dir: Path, cache_dir: Path, model_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_name).strip("_") or "model"
    return cache_dir / f"{safe}-{_weights_hash(model_dir)}.onnx"


def default_cache_dir(config: EmbedderConfig) -> Path:
    """`embedder.cache_dir` (the app sets <data_dir>/models), else the user's cache folder (a bare EmbedderConfig)."""
    if config.cache_dir:
        return Path(config.cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "graphrag-serve" / "models"


class OnnxSession:
    """Tokenizer + ONNX Runtime session + mean pooling: synchronous, one call at a time (see OnnxEmbedder)."""

    def __init__(self, onnx_path: Path, model_dir: Path, threads: int, allow_spinning: bool):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json pads every text to a fixed 128 and cuts at 128; sentence-transformers pads to the longest
        # text of the batch and cuts at max_seq_length: do the same, or the vectors differ.
        self.tokenizer.enable_truncation(max_length=_max_seq_length(model_dir))
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads burn a core while they wait for work; on a machine shared with other busy processes
        # that core is stolen from them (measured: benchmarks/embed_raw.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.dimension = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        # Sorted by length, so that a sub-batch pads to texts of similar length (as sentence-transformers does).
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            part = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in part)
            ids = np.zeros((len(part), width), dtype=np.int64)
            mask = np.zeros((len(part), width), dtype=np.int64)
            types = np.zeros((len(part), width), dtype=np.int64)
            for row, i in enumerate(part):
                n = len(encodings[i].ids)
                ids[row, :n], mask[row, :n], types[row, :n] = encodings[i].ids, 1, encodings[i].type_ids
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[part] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


class OnnxEmbedder:
    """The MiniLM weights run by ONNX Runtime in this process; encodes on one thread, off the event loop."""

    def __init__(self, config: EmbedderConfig):
        self.config = config
        self.name = f"onnxruntime:{config.model_name}"
        self._session: OnnxSession | None = None
        self._load_lock = asyncio.Lock()
        self._thread: ThreadPoolExecutor | None = None

    def _load(self) -> OnnxSession:
        model_dir = Path(resolve_model_path(self.config.model_name))
        if not model_dir.is_dir():
            raise FileNotFoundError(
                f"the onnx embedder needs local weights; {self.config.model_name!r} is not a directory or bundled model"
            )
        _check_mean_pooling(model_dir)
        path = onnx_model_path(model_dir, default_cache_dir(self.config), self.config.model_name)
        if not path.is_file():
            with _EXPORT_LOCK:
                if not path.is_file():
                    log.info("exporting %s to %s (first start)", self.config.model_name, path)
                    export_onnx(model_dir, path)
        threads = self.config.num_threads or available_cpus()
        return OnnxSession(path, model_dir, threads, self.config.onnx_allow_spinning)

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _get_session(self) -> OnnxSession:
        if self._session is None:
            async with self._load_lock:
                if self._session is None:
                    self._session = await self._run(self._load)
                    log.info("loaded %s (%d-d)", self.name, self._session.dimension)
        return self._session

    async def embed_array(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, 0), dtype=np.float32)
        session = await self._get_session()
        vectors = await self._run(session.encode, texts, self.config.max_batch_size)
        if not np.all(np.isfinite(vectors)):
            raise StageError(STAGE, f"{self.name} produced a non-finite vector")
        return vectors

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return (await self.embed_array(texts)).tolist() if texts else []

    async def dimension(self) -> int:
        return (await self._get_session()).dimension

    async def count_tokens(self, texts: list[str]) -> int:
        session = await self._get_session()
        return sum(len(e.ids) for e in await self._run(session.tokenizer.encode_batch, texts))

    async def warmup(self) -> None:
        await self.embed(["warm up"])

    async def ping(self) -> str:
        return f"{self.name} ({await self.dimension()}-d, in-process)"

    async def aclose(self) -> None:
        self._session = None
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None


_EXPORT_LOCK = threading.Lock()  # one export per process; across processes the atomic rename suffices
