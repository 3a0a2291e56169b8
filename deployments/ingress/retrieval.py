"""Retrieval, step by step: embed the query → vector ∥ graph → fuse → rerank → link boost → response.

Each step is a method over one `_Run` (the request's settings and what the steps so far found). A failed stage is
reported in `degraded` and the steps after it work with what is left; only a retrieval with no source left is a
503 (StageUnavailable).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from deployments.config import AppConfig
from deployments.errors import StageUnavailable
from deployments.graph.ties import ties
from deployments.ingress.fusion import Fused, reciprocal_rank_fusion, source_scores, weighted_score_fusion
from deployments.ingress.stage_calls import Clock, run_stage
from deployments.models import (
    Degraded,
    GraphResult,
    Hit,
    PackedVectors,
    RerankHints,
    RetrievalMode,
    RetrieveRequest,
    RetrieveResponse,
    ScoredChunk,
    StageTiming,
    Subgraph,
    Timings,
    VectorResult,
)
from deployments.stages import Stages


@dataclass
class _Run:
    """One retrieval as it goes: the request and its settings, then what each step found and what degraded."""

    req: RetrieveRequest
    clock: Clock
    top_k: int
    candidates: int
    hops: int
    mode: RetrievalMode
    use_graph: bool
    vector_mode: RetrievalMode = "hybrid"
    query_vector: list[float] | None = None
    vec: VectorResult | None = None
    grf: GraphResult | None = None
    ranked: dict[str, list[ScoredChunk]] = field(default_factory=dict)  # per source, its own ranking
    scorer: str | None = None  # the reranker's name, when it ordered the hits
    timings: Timings = field(default_factory=Timings)
    degraded: list[Degraded] = field(default_factory=list)


class Retrieval:
    def __init__(self, config: AppConfig, stages: Stages):
        self.config = config
        self.stages = stages
        self.fusion_weights = config.retrieval.weights.model_dump()  # per source, read on every request
        seeds = config.retrieval.graph_seeds
        self.seeds_from_hits = seeds == "vector_hits" or (seeds == "auto" and config.vector.embedded)

    async def run(self, req: RetrieveRequest, clock: Clock) -> RetrieveResponse:
        run = self._start(req, clock)
        await self._embed(run)
        await self._search(run)
        hits = self._fuse(run)
        mentions = self._ask_mentions(run, hits)  # for the link boost, while the reranker runs
        try:
            await self._rerank(run, hits)
            if mentions is not None:
                await self._link_boost(run, hits, mentions)
        finally:
            if mentions is not None:
                mentions.cancel()
        return self._response(run, hits)

    def _start(self, req: RetrieveRequest, clock: Clock) -> _Run:
        cfg = self.config.retrieval
        top_k = req.top_k or cfg.top_k
        mode = req.mode or cfg.mode
        return _Run(
            req=req,
            clock=clock,
            top_k=top_k,
            candidates=max(cfg.candidates, top_k),
            hops=self.config.graph.max_hops if req.max_hops is None else req.max_hops,
            mode=mode,
            use_graph=mode == "hybrid+graph" and req.use_graph,  # use_graph (deprecated): false = leave the graph out
            vector_mode=mode,
        )

    async def _embed(self, run: _Run) -> None:
        """The query is embedded once, here, and its vector goes to the vector and the graph stage, which then run
        concurrently, neither waiting for the other; no stage calls another on the way (one hop fewer)."""
        if run.mode == "lexical":
            return
        call, timeout = self.stages.embedder.embed([run.req.query]), self.config.retrieval.vector_timeout_s
        vectors, err, run.timings.embed = await run_stage("embed", call, timeout, run.clock)
        run.query_vector = vectors[0] if vectors else None
        if err:
            if run.mode == "dense":
                raise StageUnavailable("embed", err.error)
            run.degraded.append(err)
            run.vector_mode = "lexical"  # without the query's vector, the hybrid modes still answer with BM25

    async def _search(self, run: _Run) -> None:
        """The vector stage and (hybrid+graph) the graph stage, concurrently, or the graph once the vector's dense
        hits are in, as its seed passages (`retrieval.graph_seeds`); 503 only when no source is left."""
        cfg, req = self.config.retrieval, run.req
        vector_call = self.stages.vector.search(
            req.collection, req.query, run.candidates, req.filter, run.vector_mode, run.query_vector
        )
        vector_run = run_stage("vector", vector_call, cfg.vector_timeout_s, run.clock)
        if run.use_graph and self.seeds_from_hits and run.vector_mode != "lexical":
            run.vec, vec_err, run.timings.vector = await vector_run
            n_seeds = self.config.graph.index.passage_seeds
            seeds = [(h.chunk_id, h.score) for h in run.vec.hits[:n_seeds]] if run.vec is not None else None
            run.grf, grf_err, run.timings.graph = await self._graph_stage(run, seeds)
        elif run.use_graph:
            (run.vec, vec_err, run.timings.vector), (run.grf, grf_err, run.timings.graph) = await asyncio.gather(
                vector_run, self._graph_stage(run)
            )
        else:
            (run.vec, vec_err, run.timings.vector), grf_err = await vector_run, None
        run.degraded += [d for d in (vec_err, grf_err) if d]
        if vec_err and grf_err:
            raise StageUnavailable("vector+graph", f"vector: {vec_err.error}; graph: {grf_err.error}")
        if vec_err and not run.use_graph:
            raise StageUnavailable("vector", vec_err.error)
        if run.grf is not None and not run.grf.texts:
            await self._graph_texts(run, run.grf)

    async def _graph_stage(
        self, run: _Run, seeds: list[tuple[str, float]] | None = None
    ) -> tuple[GraphResult | None, Degraded | None, StageTiming]:
        """The graph stage's search as ids and scores; its seed passages given, or looked up by the query's vector."""
        req = run.req
        extra = {"seeds": seeds} if seeds is not None else {}
        call = self.stages.graph.search(
            req.collection, req.query, run.hops, run.candidates, run.query_vector, texts=False, **extra
        )
        return await run_stage("graph", call, self.config.retrieval.graph_timeout_s, run.clock)

    async def _graph_texts(self, run: _Run, grf: GraphResult) -> None:
        """The graph's chunks came as ids and scores: their texts are the vector hits' where the vector stage found
        them too, the rest read from the vector stage in one call (texts and vectors; its time counts in the
        graph's). Chunks it no longer stores (deleted since the graph's index looked) are left out. With the vector
        stage failing, the graph stage is asked again for its chunks with their texts (from its own store)."""
        vec = run.vec
        known = {c.chunk_id: c for c in (vec.hits + (vec.lexical_hits or []) if vec else [])}
        missing = [c.chunk_id for c in grf.chunks if c.chunk_id not in known]
        if missing and vec is not None:
            call = self.stages.vector.chunks(run.req.collection, missing)
            read, err, timing = await run_stage("vector", call, self.config.retrieval.vector_timeout_s, run.clock)
            if read is not None:
                known.update((c.chunk_id, c) for c in read.hits)
                grf.vectors = read.hit_vectors
                if (graph := run.timings.graph) is not None:  # the graph's evidence ends with its texts
                    graph.duration_ms = round(timing.start_ms + timing.duration_ms - graph.start_ms, 3)
                missing = []
            elif err is not None:
                run.degraded.append(Degraded(stage="vector", error=f"graph chunks' texts: {err.error}"))
        if missing:
            await self._graph_with_texts(run)
            return
        grf.chunks = [
            known[c.chunk_id].model_copy(update={"score": c.score}) for c in grf.chunks if c.chunk_id in known
        ]
        grf.texts = True

    async def _graph_with_texts(self, run: _Run) -> None:
        """The graph stage's chunks with the texts from its own store (the vector stage failing to give them)."""
        req = run.req
        call = self.stages.graph.search(req.collection, req.query, run.hops, run.candidates, run.query_vector)
        run.grf, err, _ = await run_stage("graph", call, self.config.retrieval.graph_timeout_s, run.clock)
        if err is not None:
            run.degraded.append(err)
        if run.vec is None and run.grf is None:
            raise StageUnavailable("vector+graph", "; ".join(d.error for d in run.degraded))

    def _fuse(self, run: _Run) -> list[Hit]:
        """Each source's ranking, fused into the candidates (RRF or weighted scores)."""
        vec, grf = run.vec, run.grf
        if vec is not None:
            if vec.embed is not None:  # embedded by the vector stage itself (a caller that gave no vector)
                run.timings.embed = run.clock.timing(vec.embed.start, vec.embed.end)
            if run.vector_mode != "lexical":
                run.ranked["vector"] = vec.hits
            if vec.lexical_hits is not None:
                run.ranked["lexical"] = vec.lexical_hits
            if vec.lexical_error:
                run.degraded.append(Degraded(stage="lexical", error=vec.lexical_error))
        if grf is not None:
            run.ranked["graph"] = grf.chunks
        fused = self._fusion(run.ranked)[: run.candidates]
        return [
            Hit(chunk_id=c.chunk_id, doc_id=c.doc_id, text=c.text, score=score, sources=sources, metadata=c.metadata)
            for c, score, sources in fused
        ]

    def _fusion(self, ranked: dict[str, list[ScoredChunk]]) -> Fused:
        cfg = self.config.retrieval
        if cfg.fusion == "rrf":
            return reciprocal_rank_fusion(ranked, cfg.rrf_k, self.fusion_weights)
        return weighted_score_fusion(ranked, self.fusion_weights)

    async def _rerank(self, run: _Run, hits: list[Hit]) -> None:
        """The reranker's scores order the candidates; when it fails, the fused order stays."""
        cfg, req = self.config.retrieval, run.req
        if not hits or not (cfg.rerank if req.rerank is None else req.rerank):
            return
        chunk_ids = [h.chunk_id for h in hits]
        hints = RerankHints(
            collection=req.collection,
            chunk_ids=chunk_ids,
            query_vector=run.query_vector,
            # The candidates' stored vectors that came with the hits, the vector stage's first, then the graph's.
            vectors=PackedVectors.select(
                chunk_ids,
                run.vec.hit_vectors if run.vec is not None else None,
                run.grf.vectors if run.grf is not None else None,
            ),
            signals=source_scores(run.ranked, chunk_ids),
            linked_types=linked_types(run.grf.subgraph) if run.grf is not None else [],
        )
        call = self.stages.reranker.rerank(req.query, [h.text for h in hits], hints)
        result, err, run.timings.rerank = await run_stage("rerank", call, cfg.rerank_timeout_s, run.clock)
        if err:
            run.degraded.append(err)  # keep the fused order
            return
        assert result is not None  # run_stage returns a result or an error
        run.scorer = result.scorer
        for hit, score in zip(hits, result.scores, strict=True):
            hit.score = float(score)
        hits.sort(key=lambda h: h.score, reverse=True)

    def _ask_mentions(self, run: _Run, hits: list[Hit]) -> asyncio.Task | None:
        """The graph stage's mention table of every candidate, asked before the rerank: whichever hits the reranker
        puts first, the ties to them are computed here (graph/ties.py), with no graph call after the rerank."""
        cfg = self.config.retrieval
        if not run.use_graph or run.grf is None or cfg.link_weight <= 0 or len(hits) <= cfg.link_seeds:
            return None
        call = self.stages.graph.mention_table(run.req.collection, run.req.query, [h.chunk_id for h in hits])
        return asyncio.ensure_future(run_stage("graph", call, cfg.graph_timeout_s, run.clock))

    async def _link_boost(self, run: _Run, hits: list[Hit], mentions: asyncio.Task) -> None:
        """Raises the candidates tied through specific entities to the best hits (GraphService.links), by up to
        `link_weight` of the score range, and re-sorts: the second hop of a multi-hop question rarely resembles
        the question itself, but the passage that answers its first hop names it."""
        cfg, n_seeds = self.config.retrieval, self.config.retrieval.link_seeds
        seeds, rest = [h.chunk_id for h in hits[:n_seeds]], [h.chunk_id for h in hits[n_seeds:]]
        table, err, _ = await mentions
        links = ties(table, seeds, rest) if table is not None else None
        if links is None and err is None:  # a replica without its in-memory index: the store's query, now
            call = self.stages.graph.links(run.req.collection, run.req.query, seeds, rest)
            links, err, _ = await run_stage("graph", call, cfg.graph_timeout_s, run.clock)
        if err:
            run.degraded.append(err)  # keep the reranked order
            return
        if not links:
            return
        strongest = max(links.values())
        spread = (max(h.score for h in hits) - min(h.score for h in hits)) or 1.0
        # A second hop stays behind the hits that lead to it: it never passes the lowest seed.
        ceiling = min(h.score for h in hits[:n_seeds]) - 1e-6
        for hit in hits[n_seeds:]:
            if links.get(hit.chunk_id, 0.0) > 0:
                hit.score = min(
                    hit.score + cfg.link_weight * spread * links[hit.chunk_id] / strongest, max(hit.score, ceiling)
                )
        hits.sort(key=lambda h: h.score, reverse=True)

    def _response(self, run: _Run, hits: list[Hit]) -> RetrieveResponse:
        run.timings.total = run.clock.timing(run.clock.t0, time.time())
        return RetrieveResponse(
            query=run.req.query,
            collection=run.req.collection,
            hits=hits[: run.top_k],
            graph=run.grf.subgraph if run.grf is not None else Subgraph(),
            timings=run.timings,
            degraded=run.degraded,
            reranker=run.scorer,
            mode=run.mode,
        )


def linked_types(subgraph: Subgraph) -> list[str]:
    """The types of the entities the question links (the subgraph's hops-0 nodes), each once."""
    return sorted({node.type for node in subgraph.nodes if node.hops == 0 and node.type})
