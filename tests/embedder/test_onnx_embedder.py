"""The ONNX Runtime backend: exported locally from the shipped weights, same vectors as sentence-transformers."""

import json
import shutil

import numpy as np
import pytest

from deployments.config import AppConfig, EmbedderConfig
from deployments.embedder import onnx_backend
from deployments.embedder.backends import SentenceTransformerEmbedder
from deployments.embedder.local_model import resolve_model_path
from deployments.embedder.onnx_backend import OnnxEmbedder, onnx_model_path

TEXTS = [
    "Which engine is written in Rust?",
    "Qdrant is a vector search engine written in Rust.",
    "The cat sat on the mat.",
    # Longer than tokenizer.json's own 128-token cut: must be cut at 256 like sentence-transformers does.
    " ".join(f"word{i} of a long scientific abstract about protein folding" for i in range(60)),
    "",  # an empty text is still a [CLS] [SEP] sequence
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
async def torch_vectors():
    reference = SentenceTransformerEmbedder(EmbedderConfig(backend="torch"))
    try:
        yield np.asarray(await reference.embed(TEXTS))
    finally:
        await reference.aclose()


async def test_onnx_export_matches_torch(cache, torch_vectors):
    emb = OnnxEmbedder(EmbedderConfig(cache_dir=str(cache), max_batch_size=2))  # sub-batches of mixed lengths
    try:
        vectors = np.asarray(await emb.embed(TEXTS))
        exported = list(cache.glob("*.onnx"))
        assert len(exported) == 1 and exported[0].name.startswith("all-MiniLM-L6-v2-")
        assert not list(cache.glob("*.tmp"))  # the export was renamed into place
        assert vectors.shape == (len(TEXTS), 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosine = (vectors * torch_vectors).sum(axis=1)
        assert cosine.min() >= 0.9999, cosine
        # One text alone gets the same vector as inside a batch (padding does not leak into the mean).
        alone = np.asarray(await emb.embed([TEXTS[0]]))[0]
        assert float(alone @ vectors[0]) >= 0.99999
        assert await emb.dimension() == 384
        assert (await emb.ping()).startswith("onnxruntime:all-MiniLM-L6-v2")
        assert await emb.embed([]) == []
    finally:
        await emb.aclose()


async def test_a_cached_export_is_reused(cache, monkeypatch, torch_vectors):
    assert list(cache.glob("*.onnx")), "runs after the export test"

    def no_export(*args):
        raise AssertionError("exported again although the cached model matches the weights")

    monkeypatch.setattr(onnx_backend, "export_onnx", no_export)
    emb = OnnxEmbedder(EmbedderConfig(cache_dir=str(cache)))
    try:
        vectors = np.asarray(await emb.embed(TEXTS[:2]))
        assert (vectors * torch_vectors[:2]).sum(axis=1).min() >= 0.9999
    finally:
        await emb.aclose()


def test_the_cache_key_follows_the_weights(tmp_path):
    source = resolve_model_path("all-MiniLM-L6-v2")
    copy = tmp_path / "weights"
    shutil.copytree(source, copy)
    original = onnx_model_path(copy, tmp_path, "all-MiniLM-L6-v2")
    config = json.loads((copy / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6
    (copy / "config.json").write_text(json.dumps(config))
    assert onnx_model_path(copy, tmp_path, "all-MiniLM-L6-v2") != original


def test_other_pooling_is_refused(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    with pytest.raises(ValueError, match="mean pooling only"):
        onnx_backend._check_mean_pooling(tmp_path)


def test_the_app_caches_exports_in_its_data_folder(tmp_path):
    config = AppConfig(data_dir=str(tmp_path))
    assert config.embedder.backend == "onnx"
    assert config.embedder.cache_dir == str(tmp_path / "models")


async def test_both_local_backends_count_the_tokens_they_embed(cache):
    """The usage of POST /v1/embeddings: the model's tokens with [CLS] and [SEP], cut at the model's 256."""
    onnx, torch = (
        OnnxEmbedder(EmbedderConfig(cache_dir=str(cache))),
        SentenceTransformerEmbedder(EmbedderConfig(backend="torch")),
    )
    try:
        assert await onnx.count_tokens(["The cat sat on the mat."]) == 9  # [CLS] the cat sat on the mat . [SEP]
        assert await onnx.count_tokens([TEXTS[3]]) == 256
        assert await onnx.count_tokens(TEXTS) == await torch.count_tokens(TEXTS)
    finally:
        await onnx.aclose()
        await torch.aclose()
