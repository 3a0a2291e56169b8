"""Rerank stage: scores the fused candidates against the query, with an HTTP reranker (TEI / Cohere / Jina)
or, offline, our own embedded dense + lexical scorer."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import httpx
import numpy as np

from deployments.config import RerankerConfig
from deployments.errors import StageError, StageUnavailable
from deployments.models import RerankHints, RerankResult
from deployments.net import redact_url

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]
FetchVectors = Callable[[str, list[str]], Awaitable[dict[str, list[float]]]]
log = logging.getLogger("graphrag.reranker")
STAGE = "rerank"
EMBEDDED_SCORER = "embedded-dense-lexical"


class RerankBackend(Protocol):
    """What the Serve wrapper delegates to."""

    async def rerank(self, query: str, texts: list[str], hints: RerankHints | None = None) -> RerankResult: ...
    async def ping(self) -> str: ...
    async def aclose(self) -> None: ...


# ---- HTTP reranker ---------------------------------------------------------------------------


class HttpReranker:
    """A reranking service over HTTP.

    Without `config.model` it speaks TEI: POST {query, texts, truncate} -> [{index, score}].
    With `config.model` it speaks the Cohere / Jina API: POST {model, query, documents, top_n} ->
    {results: [{index, relevance_score}]}. Either response shape is accepted whichever was sent, since
    several servers (Infinity, vLLM) answer TEI-style paths with Cohere-style bodies.
    """

    def __init__(self, config: RerankerConfig):
        if not config.url:
            raise ValueError("HttpReranker needs reranker.url")
        self.config = config
        self.url = config.url
        self.scorer = f"http:{redact_url(config.url)}"
        self._client: httpx.AsyncClient | None = None
        self.breaker = config.breaker.make(
            STAGE, f"reranker {self.scorer}", probe=lambda: self._rerank("ping", ["ping"])
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Accept": "application/json"}
            if self.config.api_key is not None:
                headers["Authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
            n = self.config.max_connections
            self._client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(self.config.timeout_s),
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            )
        return self._client

    def _payload(self, query: str, texts: list[str]) -> dict[str, Any]:
        if self.config.model:
            return {"model": self.config.model, "query": query, "documents": texts, "top_n": len(texts)}
        # truncate: over-long passages are cut to the model's window instead of failing the whole batch.
        return {"query": query, "texts": texts, "truncate": True}

    async def rerank(self, query: str, texts: list[str], hints: RerankHints | None = None) -> RerankResult:
        if not texts:
            return RerankResult(scores=[], scorer=self.scorer)
        return await self.breaker.call(lambda: self._rerank(query, texts))

    async def _rerank(self, query: str, texts: list[str]) -> RerankResult:
        try:
            resp = await self._http().post(self.url, json=self._payload(query, texts))
        except httpx.TimeoutException as exc:
            raise StageUnavailable(STAGE, f"reranker {self.scorer} timed out after {self.config.timeout_s}s") from exc
        except httpx.HTTPError as exc:
            raise StageUnavailable(STAGE, f"reranker {self.scorer} unreachable: {type(exc).__name__}: {exc}") from exc
        if not resp.is_success:
            raise StageError(STAGE, f"reranker {self.scorer} answered HTTP {resp.status_code}: {resp.text[:200]!r}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise StageError(STAGE, f"reranker {self.scorer} answered with invalid JSON: {resp.text[:200]!r}") from exc
        return RerankResult(scores=self._parse(body, len(texts)), scorer=self.scorer)

    def _parse(self, body: Any, n: int) -> list[float]:
        """Scores in input order from either response shape; anything incomplete is an error, never a guess."""
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            items, key = body["results"], "relevance_score"
        elif isinstance(body, list):
            items, key = body, "score"
        else:
            raise StageError(STAGE, f"reranker {self.scorer} answered an unknown shape: {str(body)[:200]!r}")
        scores: list[float | None] = [None] * n
        for item in items:
            try:
                index = item["index"]
                score = float(item[key] if key in item else item["score"])
            except (KeyError, TypeError, ValueError) as exc:
                raise StageError(
                    STAGE, f"reranker {self.scorer} answered a malformed item: {str(item)[:200]!r}"
                ) from exc
            if not isinstance(index, int) or not 0 <= index < n or scores[index] is not None:
                raise StageError(
                    STAGE, f"reranker {self.scorer} answered a bad or repeated index {index!r} for {n} texts"
                )
            if not math.isfinite(score):
                raise StageError(STAGE, f"reranker {self.scorer} answered a non-finite score for text {index}")
            scores[index] = score
        missing = [i for i, s in enumerate(scores) if s is None]
        if missing:
            raise StageError(
                STAGE, f"reranker {self.scorer} scored {n - len(missing)} of {n} texts (missing {missing[:10]})"
            )
        return [s for s in scores if s is not None]

    async def ping(self) -> str:
        # A one-text rerank, not a bare GET: it also proves the credentials and the request/response shape
        # (TEI answers GET with 405 before any auth check). Costs one tiny call per readiness probe.
        await self.rerank("ping", ["ping"])
        return self.scorer

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


# ---- embedded scorer -------------------------------------------------------------------------


def _found_scores(scores: list[float | None]) -> np.ndarray:
    """A retrieval source's scores (BM25, graph: 0 = no evidence) over its best, so within [0, 1]; 0 for the
    texts it did not find (they ranked below its last hit)."""
    best = max((s for s in scores if s is not None), default=0.0)
    if best <= 0:
        return np.zeros(len(scores))
    return np.array([max(s, 0.0) / best if s is not None else 0.0 for s in scores])


def lift(scores: np.ndarray, bonus: np.ndarray, keep: int) -> np.ndarray:
    """`scores` raised by `bonus`, but none past the `keep` best of `scores` (those stay as they are)."""
    scores = np.asarray(scores, dtype=np.float64)
    if keep <= 0 or len(scores) == 0:
        return scores + bonus
    kept = np.argsort(-scores, kind="stable")[:keep]
    lifted = np.minimum(scores + bonus, scores[kept].min() - 1e-6)
    lifted[kept] = scores[kept]
    return np.maximum(scores, lifted)


class EmbeddedScorer:
    """Our own offline scorer (not a cross-encoder): a weighted blend of the retrieval sources' signals.

    With the retrieval sources' scores in the hints (`RerankHints.signals`), it blends exactly the sources the
    request used: the raw dense cosine (recomputed for every candidate from the stored vectors, so a chunk only
    BM25 or the graph found still gets its dense score), Qdrant's BM25 (collection-wide IDF) over the best BM25
    score (0 where BM25 missed the chunk). Weights: `dense_weight` and `1 - dense_weight` share dense vs lexical;
    the sum is divided by the weights used. Raw cosine with max-scaled BM25 beat min-max weighted scores and RRF on
    SciFact's train queries (figures in benchmarks/README.md, "Retrieval quality"). Without signals, the dense
    cosine alone.

    The graph score (the walk's share of its restart mass, graph/index/collection.py; clipped at 1) lifts a candidate by
    `graph_weight` × that share, but never past the `graph_keep` best dense + lexical candidates: the second hop
    of a multi-hop question joins the top hits behind the ones that lead to it, and a single-hop question keeps
    its best hits (chosen on HotpotQA-100 questions 0–49 and SciFact train: benchmarks/graph_tune.py).
    """

    scorer = EMBEDDED_SCORER

    def __init__(
        self,
        embed: Embed,
        dense_weight: float = 0.7,
        fetch_vectors: FetchVectors | None = None,
        graph_weight: float = 0.0,
        graph_keep: int = 0,
        entity_lift: tuple[float, int] | None = None,
        entity_types: Sequence[str] = (),
    ):
        if not 0 <= dense_weight <= 1:
            raise ValueError("dense_weight must be within [0, 1]")
        if min(graph_weight, graph_keep, *(entity_lift or ())) < 0:
            raise ValueError("graph weights and keeps must be >= 0")
        self.graph_keep = graph_keep
        self._embed = embed
        self._fetch = fetch_vectors
        self.dense_weight = dense_weight
        self.graph_weight = graph_weight
        # (graph_weight, graph_keep) for an entity-centric question (one linking an entity of `entity_types`).
        self.entity_lift = entity_lift or (graph_weight, graph_keep)
        self.entity_types = frozenset(entity_types)

    async def _vectors(self, texts: list[str]) -> np.ndarray:
        try:
            vectors = np.asarray(await self._embed(texts), dtype=np.float32)
        except StageError:
            raise
        except Exception as exc:
            raise StageError(STAGE, f"{self.scorer} could not embed: {type(exc).__name__}: {exc}") from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise StageError(
                STAGE, f"{self.scorer}: the embedder returned shape {vectors.shape} for {len(texts)} texts"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    async def _known_vectors(
        self, texts: list[str], hints: RerankHints | None
    ) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
        """Vectors computed earlier in the request (the query's) or stored at ingest (the passages')."""
        query_vec = np.asarray(hints.query_vector, dtype=np.float32) if hints and hints.query_vector else None
        # The vectors that came with the hits first; only the rest (chunks the graph alone found) are fetched.
        stored: dict[str, Any] = hints.vectors.unpack() if hints and hints.vectors else {}
        missing = [c for c in hints.chunk_ids if c not in stored] if hints else []
        if hints and missing and self._fetch is not None:
            try:
                stored.update(await self._fetch(hints.collection, missing))
            except Exception as exc:  # stored vectors only save work: embed instead, and say so
                log.warning("%s: stored vectors unavailable, embedding the passages: %s", self.scorer, exc)
        ids = hints.chunk_ids if hints and hints.chunk_ids else [None] * len(texts)
        return query_vec, [np.asarray(stored[c], dtype=np.float32) if c in stored else None for c in ids]

    async def rerank(self, query: str, texts: list[str], hints: RerankHints | None = None) -> RerankResult:
        if not texts:
            return RerankResult(scores=[], scorer=self.scorer)
        # Without the retrieval's signals (a caller that passes none), the dense cosine alone.
        signals = (hints.signals if hints is not None else None) or {"vector": [None] * len(texts)}
        for source, scores in signals.items():
            if len(scores) != len(texts):
                raise StageError(STAGE, f"{self.scorer}: {len(scores)} {source} scores for {len(texts)} texts")
        blend: list[tuple[float, np.ndarray]] = []
        if "vector" in signals:
            blend.append((self.dense_weight, await self._cosine(query, texts, hints)))
        if "lexical" in signals:
            blend.append((1 - self.dense_weight, _found_scores(signals["lexical"])))
        total = sum(w for w, _ in blend)
        graph = np.minimum([max(s or 0.0, 0.0) for s in signals["graph"]], 1.0) if "graph" in signals else None
        entity_centric = hints is not None and not self.entity_types.isdisjoint(hints.linked_types)
        weight, keep = self.entity_lift if entity_centric else (self.graph_weight, self.graph_keep)
        if total <= 0 and graph is not None and weight > 0:
            fused = graph  # the graph alone found something (the vector stage degraded)
        else:
            if total <= 0:  # every used source weighs 0: keep the retrieval order
                blend, total = [(1.0, np.linspace(1.0, 0.0, len(texts)))], 1.0
            fused = np.asarray(sum(w * x for w, x in blend)) / total
            if graph is not None and weight > 0:
                fused = lift(fused, weight * graph, keep)
        return RerankResult(scores=[round(float(s), 6) for s in fused], scorer=self.scorer)

    async def _cosine(self, query: str, texts: list[str], hints: RerankHints | None) -> np.ndarray:
        """Cosine of the query with each text, from vectors already known where possible."""
        query_vec, passage_vecs = await self._known_vectors(texts, hints)
        missing = ([query] if query_vec is None else []) + [t for t, v in zip(texts, passage_vecs) if v is None]
        computed = list(await self._vectors(missing)) if missing else []
        if query_vec is None:
            query_vec = computed.pop(0)
        filled = iter(computed)
        vectors = np.stack([query_vec] + [v if v is not None else next(filled) for v in passage_vecs])
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors[1:] @ vectors[0]

    async def ping(self) -> str:
        await self._vectors(["ping"])
        weight, keep = self.entity_lift
        return (
            f"{self.scorer} (dense weight {self.dense_weight}, graph weight {self.graph_weight}, keep {self.graph_keep};"
            f" entity-centric questions {weight}, keep {keep})"
        )

    async def aclose(self) -> None:
        return None


def make_reranker(
    config: RerankerConfig, embed: Embed | None = None, fetch_vectors: FetchVectors | None = None
) -> RerankBackend:
    if config.url:
        return HttpReranker(config)
    if embed is None:
        raise ValueError("the embedded scorer needs an embed callable (no reranker.url is set)")
    return EmbeddedScorer(
        embed,
        config.dense_weight,
        fetch_vectors,
        config.graph_weight,
        config.graph_keep,
        (config.entity_graph_weight, config.entity_graph_keep),
        config.entity_types,
    )
