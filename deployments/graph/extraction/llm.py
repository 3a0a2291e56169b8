"""LLM entity and relation extraction as a race between OpenAI-compatible providers.

Per chunk, the configured providers start concurrently (at most `max_concurrent_providers` in flight); the
first result that validates against `LLMGraph` and passes the minimums wins and the others are cancelled.
A reply that is not valid JSON for the schema gets one repair attempt, which is shown the raw reply and the
validation error. When every provider fails, the offline extractor answers (or the chunk fails, if
`fallback_offline` is off). Who won and why each other provider did not is kept in the `Extraction` and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field, ValidationError

from deployments.config import ExtractionConfig, ExtractionProvider
from deployments.errors import StageError
from deployments.graph.extraction.offline import extract as offline_extract
from deployments.graph.extraction.ontology import DEFAULT_RELATION_TYPE, relation_type
from deployments.models import Chunk, Entity, Extraction, Relation
from deployments.net import redact_url
from deployments.openai_client import openai_client
from deployments.text import STOP_WORDS, normalize_name, split_sentences

log = logging.getLogger("graphrag.extraction")

MAX_NAME_CHARS = 200
# Common spellings of the schema's types (ontology.ENTITY_TYPES); an unknown type becomes the allow-list's last entry.
_TYPE_SYNONYMS = {
    "PER": "PERSON",
    "PEOPLE": "PERSON",
    "HUMAN": "PERSON",
    "CHARACTER": "PERSON",
    "ORGANIZATION": "ORG",
    "ORGANISATION": "ORG",
    "COMPANY": "ORG",
    "INSTITUTION": "ORG",
    "BAND": "ORG",
    "TEAM": "ORG",
    "GROUP": "ORG",
    "TECHNOLOGY": "TECH",
    "SOFTWARE": "TECH",
    "PROTOCOL": "TECH",
    "LOCATION": "LOC",
    "PLACE": "LOC",
    "REGION": "LOC",
    "CITY": "GPE",
    "COUNTRY": "GPE",
    "STATE": "GPE",
    "TOWN": "GPE",
    "NATIONALITY": "NORP",
    "FACILITY": "FAC",
    "BUILDING": "FAC",
    "AIRPORT": "FAC",
    "FILM": "WORK",
    "BOOK": "WORK",
    "ALBUM": "WORK",
    "SONG": "WORK",
    "MOVIE": "WORK",
    "WORK_OF_ART": "WORK",
    "TIME": "DATE",
    "YEAR": "DATE",
}


# ---- the schema the model must follow --------------------------------------------------------------


class LLMEntity(BaseModel):
    name: str = Field(min_length=1, max_length=1000)
    type: str = Field("OTHER", max_length=200)
    aliases: list[str] = Field(default_factory=list, max_length=20)  # other names of it in the text ("NASA")


class LLMRelation(BaseModel):
    source: str = Field(min_length=1, max_length=1000)
    target: str = Field(min_length=1, max_length=1000)
    type: str = Field(DEFAULT_RELATION_TYPE, max_length=200)
    weight: float = Field(1.0, gt=0, le=100)


class LLMGraph(BaseModel):
    entities: list[LLMEntity]
    relations: list[LLMRelation] = Field(default_factory=list)


def system_prompt(entity_types: list[str]) -> str:
    return (
        "Extract a knowledge graph from the user's text. Reply with one JSON object and nothing else, of the form "
        '{"entities": [{"name": "...", "type": "...", "aliases": ["<other name of it in the text>"]}], '
        '"relations": [{"source": "<entity name>", "target": "<entity name>", "type": "<UPPER_SNAKE_CASE>"}]}. '
        f"Entity types: {', '.join(entity_types)}. Entities are names (people, organizations, places, works, events, "
        "dated events), never common words. A relation's type is the verb or preposition that ties source to target "
        "in the text (BORN_IN, WRITTEN_BY, EDITOR_OF, SHIPS). Use the names as written in the text, the longest form "
        "as the name and short forms or acronyms as aliases; every relation's source and target must be names from "
        "your entities list. Extract only what the text states."
    )


def repair_prompt(error: str) -> str:
    return (
        f"Your reply was not valid for the required JSON schema: {error}\n"
        "Reply again with only the corrected JSON object."
    )


# ---- normalization -----------------------------------------------------------------------------------


def normalize_type(raw: str, allowed: list[str]) -> str:
    t = re.sub(r"[^A-Z0-9]+", "_", raw.upper()).strip("_")
    if t in allowed:
        return t
    mapped = _TYPE_SYNONYMS.get(t)
    return mapped if mapped in allowed else allowed[-1]


def normalize_relation_type(raw: str) -> str:
    """UPPER_SNAKE_CASE made of ASCII letters, digits and `_` only (ontology.relation_type), else RELATED_TO."""
    return relation_type(raw) or DEFAULT_RELATION_TYPE


def normalize(graph: LLMGraph, chunk_id: str, config: ExtractionConfig, lead_text: str = "") -> Extraction:
    """Stable keys from normalized names, allowed types, duplicates merged, dangling or self relations dropped;
    an entity named in `lead_text` (the chunk's first sentence) is marked `lead`."""
    lead = f" {normalize_name(lead_text)} "
    entities: dict[str, Entity] = {}
    for e in graph.entities:
        name = " ".join(e.name.split())[:MAX_NAME_CHARS]
        key = normalize_name(name)
        if not key or key in STOP_WORDS:
            continue
        etype = normalize_type(e.type, config.entity_types)
        known = entities.get(key)
        if known is None:
            if len(entities) >= config.max_entities:
                continue
            known = entities[key] = Entity(key=key, name=name, type=etype, lead=f" {key} " in lead)
        elif known.type == config.entity_types[-1] and etype != known.type:
            known.type = etype  # a specific type beats the catch-all
        for alias in e.aliases:
            a = normalize_name(alias[:MAX_NAME_CHARS])
            if a and a != key and a not in STOP_WORDS and a not in known.aliases:
                known.aliases.append(a)
    alias_of = {a: e.key for e in entities.values() for a in e.aliases if a not in entities}
    relations: dict[tuple[str, str, str], Relation] = {}
    dropped = 0
    for r in graph.relations:
        source, target = normalize_name(r.source), normalize_name(r.target)
        source, target = alias_of.get(source, source), alias_of.get(target, target)
        if source not in entities or target not in entities or source == target:
            dropped += 1
            continue
        rtype = normalize_relation_type(r.type)
        rel_key = (source, target, rtype)
        if rel_key in relations:
            relations[rel_key].weight += r.weight
        elif len(relations) < config.max_relations:
            relations[rel_key] = Relation(source=source, target=target, type=rtype, weight=r.weight)
        else:
            dropped += 1
    return Extraction(chunk_id=chunk_id, entities=list(entities.values()), relations=list(relations.values()),
                      dropped_relations=dropped)  # fmt: skip


def parse_reply(content: str | None) -> LLMGraph:
    """The model's reply as an LLMGraph; a ```json fence around it is tolerated. Raises ValueError."""
    text = (content or "").strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    if fenced:
        text = fenced.group(1)
    try:
        return LLMGraph.model_validate_json(text)
    except ValidationError as exc:
        # One line per problem, without pydantic's documentation links.
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in exc.errors()[:10])
        raise ValueError(problems) from None


class ProviderFailed(Exception):
    pass


# ---- the race --------------------------------------------------------------------------------------


class LLMExtractor:
    """Async extractor for GraphService: `await extractor(chunk)` -> Extraction."""

    def __init__(self, config: ExtractionConfig, offline: Callable[[Chunk], Extraction] | None = None):
        if not config.providers:
            raise ValueError("LLMExtractor needs at least one provider in graph.extraction.providers")
        labels = [p.label for p in config.providers]
        if len(set(labels)) != len(labels):
            raise ValueError(f"extraction providers need distinct names, got {labels}")
        self.config = config
        self._offline = offline or offline_extractor(config)
        self._clients: dict[str, openai.AsyncOpenAI] = {}
        self._chunks = asyncio.Semaphore(config.max_concurrent_chunks)

    def _client(self, p: ExtractionProvider) -> openai.AsyncOpenAI:
        client = self._clients.get(p.label)
        if client is None:
            client = self._clients[p.label] = openai_client(p.base_url, p.api_key, p.timeout_s)
        return client

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()

    async def __call__(self, chunk: Chunk) -> Extraction:
        async with self._chunks:
            return await self.extract(chunk)

    async def extract(self, chunk: Chunk) -> Extraction:
        started = time.monotonic()
        winner, result, failures = await self._race(chunk)
        if result is not None:
            log.info("extraction %s: %s won in %.2fs (%d entities, %d relations, %d dropped); others: %s",
                     chunk.chunk_id, winner, time.monotonic() - started, len(result.entities), len(result.relations),
                     result.dropped_relations, failures or "none")  # fmt: skip
            return result.model_copy(update={"extractor": winner, "failures": failures})
        summary = "; ".join(f"{k}: {v}" for k, v in failures.items())
        if not self.config.fallback_offline:
            raise StageError(
                "graph", f"LLM extraction of chunk {chunk.chunk_id!r} failed on every provider ({summary})"
            )
        log.warning("extraction %s: every provider failed, using the offline extractor (%s)", chunk.chunk_id, summary)
        fallback = await asyncio.to_thread(self._offline, chunk)  # spaCy's parse: off the event loop
        return fallback.model_copy(update={"extractor": "offline", "failures": failures})

    async def _race(self, chunk: Chunk) -> tuple[str | None, Extraction | None, dict[str, str]]:
        gate = asyncio.Semaphore(self.config.max_concurrent_providers)

        async def attempt(p: ExtractionProvider) -> Extraction:
            async with gate:
                try:
                    return await asyncio.wait_for(self._attempt(p, chunk), p.timeout_s)
                except TimeoutError:
                    raise ProviderFailed(f"no valid reply within {p.timeout_s:g}s") from None

        tasks = {asyncio.create_task(attempt(p), name=f"extract:{p.label}"): p.label for p in self.config.providers}
        failures: dict[str, str] = {}
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: tasks[t]):  # ties: a stable order
                    exc = task.exception()
                    if exc is None:
                        winner = tasks[task]
                        for other in done - {task}:
                            other_exc = other.exception()
                            if other_exc is None:
                                failures[tasks[other]] = f"valid too, but finished together with {winner}"
                            else:
                                failures[tasks[other]] = _describe(other_exc)
                        for loser in pending:
                            failures[tasks[loser]] = f"cancelled: {winner} won the race"
                        return winner, task.result(), failures
                    failures[tasks[task]] = _describe(exc)
            return None, None, failures
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _attempt(self, p: ExtractionProvider, chunk: Chunk) -> Extraction:
        cfg = self.config
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system_prompt(cfg.entity_types)},
            {"role": "user", "content": chunk.text},
        ]
        content = await self._complete(p, messages)
        try:
            graph = parse_reply(content)
        except ValueError as first_error:
            # One repair: the model sees its own reply and what was wrong with it.
            messages += [
                {"role": "assistant", "content": content or ""},
                {"role": "user", "content": repair_prompt(str(first_error))},
            ]
            content = await self._complete(p, messages)
            try:
                graph = parse_reply(content)
            except ValueError as exc:
                raise ProviderFailed(f"invalid JSON after one repair attempt: {exc}"[:300]) from None
        sentences = split_sentences(chunk.text)
        result = normalize(graph, chunk.chunk_id, cfg, sentences[0] if sentences else "")
        if len(result.entities) < cfg.min_entities or len(result.relations) < cfg.min_relations:
            raise ProviderFailed(
                f"{len(result.entities)} entities and {len(result.relations)} relations, below the minimum "
                f"({cfg.min_entities} and {cfg.min_relations})"
            )
        return result

    async def _complete(self, p: ExtractionProvider, messages: list[ChatCompletionMessageParam]) -> str | None:
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if p.json_mode else {}
        try:
            reply = await self._client(p).chat.completions.create(
                model=p.model, messages=messages, temperature=self.config.temperature,
                max_tokens=self.config.max_tokens, **extra,
            )  # fmt: skip
        except openai.APIStatusError as exc:
            raise ProviderFailed(f"HTTP {exc.status_code} from {redact_url(p.base_url)}") from None
        except openai.APIConnectionError as exc:
            raise ProviderFailed(f"cannot reach {redact_url(p.base_url)}: {type(exc).__name__}") from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as exc:
            raise ProviderFailed(f"unreadable response from {redact_url(p.base_url)}: {type(exc).__name__}") from None
        if not reply.choices:
            raise ProviderFailed("the reply has no choices")
        return reply.choices[0].message.content


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ProviderFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:300]


def offline_extractor(config: ExtractionConfig) -> Callable[[Chunk], Extraction]:
    """`graph.extraction.offline`: spaCy's parse (typed entities and relations) or the capitalization patterns."""
    if config.offline == "patterns":
        return offline_extract
    from deployments.graph.extraction.spacy import SpacyExtractor

    return SpacyExtractor()


def make_extractor(config: ExtractionConfig) -> Callable[[Chunk], Any]:
    """The extractor a GraphService uses: the LLM race when providers are configured, else the offline one."""
    return LLMExtractor(config) if config.providers else offline_extractor(config)
