"""The web page end to end in a real browser: Debian's headless Chromium driven by Playwright (no browser download)
against the real app (embedded default, an API key configured), on the sample corpus. Saves a screenshot of each
view to benchmarks/results/ui-*.png (shown in the README)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from deployments.ingress.auth import hash_key
from graph import load_serve_config
from tests.local_app import local_app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "configs" / "sample"
SHOTS = ROOT / "benchmarks" / "results"
CHROMIUM = "/usr/bin/chromium"
# As root in a container: no sandbox, no GPU, nothing that talks to the outside.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# GRAPHRAG_UI_TEST_URL (+ _KEY): drive an app that is already running (with `demo` ingested) instead of starting one.
KEY = os.environ.get("GRAPHRAG_UI_TEST_KEY", "ui-test-key")
LIMITED_KEY = "ui-test-key-uitest-only"
QUESTION = "Which database ships a Bolt protocol plugin?"
WAIT_MS = 180_000  # answers and ingests on a shared 2-core machine


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The embedded default as `make demo` serves it (configs/local.yaml), with an API key, the sample corpus in `demo`."""
    if os.environ.get("GRAPHRAG_UI_TEST_URL"):
        yield os.environ["GRAPHRAG_UI_TEST_URL"]
        return
    args, _ = load_serve_config(str(ROOT / "configs" / "local.yaml"))
    args["data_dir"] = str(tmp_path_factory.mktemp("graphrag-ui"))
    # The page works with a read + write key: no admin scope (the arbitrary-Cypher route) needed. A second key,
    # limited to `uitest`, checks that the page lists only the collections a key may access.
    args["auth"] = {
        "keys": [
            {"sha256": hash_key(KEY), "name": "ui", "scopes": ["read", "write"]},
            {
                "sha256": hash_key(LIMITED_KEY),
                "name": "ui-limited",
                "scopes": ["read", "write"],
                "collections": ["uitest"],
            },
        ]
    }
    with local_app(args, "graphrag") as base:
        docs = [
            {"id": p.stem, "text": p.read_text(), "metadata": {"source": p.name}} for p in sorted(SAMPLE.glob("*.md"))
        ]
        resp = httpx.post(
            f"{base}/v1/ingest", json={"collection": "demo", "documents": docs}, headers={"X-API-Key": KEY}, timeout=600
        )
        assert resp.status_code == 200, resp.text
        yield base


@pytest.fixture(scope="module")
def page(app_url, tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: `make setup` installs Debian's chromium (apt-get install chromium chromium-driver)"
        )
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 900},
            device_scale_factor=1,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
            page.errors = errors
            requests: list[str] = []
            page.on("request", lambda req: requests.append(f"{req.method} {req.url}"))
            page.requests = requests
            yield page
        finally:
            context.close()


def api(app_url: str, method: str, path: str, **kwargs) -> dict:
    resp = httpx.request(method, f"{app_url}{path}", headers={"X-API-Key": KEY}, timeout=300, **kwargs)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_js(page, expression: str, timeout_ms: int = WAIT_MS) -> None:
    """Polls a JS expression until it is truthy. Not page.wait_for_function: that evaluates a string inside the page,
    which the page's Content-Security-Policy (no eval) refuses, and the CSP stays on in these tests."""
    for _ in range(timeout_ms // 100):
        if page.evaluate(expression):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"timed out waiting for {expression}")


def shot(page, name: str) -> None:
    page.wait_for_timeout(300)  # let transitions settle
    page.screenshot(path=str(SHOTS / f"ui-{name}.png"))


def ask(page, collection: str, question: str, mode: str = "hybrid+graph", top_k: int = 5) -> None:
    page.click("button[data-view=ask]")
    page.click("#collections-refresh")
    page.wait_for_selector(f"#ask-collection option[value='{collection}']", state="attached")
    page.select_option("#ask-collection", collection)
    page.select_option("#ask-mode", mode)
    page.fill("#ask-topk", str(top_k))
    page.fill("#ask-question", question)
    page.click("#ask-submit")
    wait_js(page, "document.getElementById('answer-status').textContent.startsWith('answered')")


def test_the_page_loads_without_a_key_and_asks_for_one(app_url, page):
    assert httpx.get(f"{app_url}/v1/stats").status_code == 401  # the data stays behind the key
    page.goto(f"{app_url}/ui")
    assert page.url.split("#")[0].endswith("/ui/") and page.title() == "graphrag-serve"
    page.wait_for_selector("#banner:not([hidden])")
    assert "API key" in page.text_content("#banner")
    page.fill("#api-key", KEY)
    page.click("#key-save")
    page.wait_for_selector("#ask-collection option[value='demo']", state="attached")
    assert page.evaluate("sessionStorage.getItem('graphrag.apiKey')") == KEY
    assert KEY not in page.url
    assert page.is_hidden("#banner")


def test_ask_streams_a_cited_answer_with_scored_passages_and_their_sources(app_url, page):
    ask(page, "demo", QUESTION)
    expected = api(
        app_url,
        "POST",
        "/v1/answer",
        json={"collection": "demo", "query": QUESTION, "mode": "hybrid+graph", "top_k": 5},
    )
    # The extractive answer is deterministic: the page shows what the API answers, citations included.
    assert page.text_content("#answer").strip() == expected["answer"].strip()
    cites = page.locator("#answer a.cite")
    assert cites.count() >= 1
    assert {int(n) for n in cites.evaluate_all("els => els.map(e => e.dataset.n)")} == {
        c["n"] for c in expected["citations"]
    }
    passages = page.locator("#passages > li")
    assert passages.count() == len(expected["hits"]) == 5
    for i, hit in enumerate(expected["hits"]):
        p = passages.nth(i)
        assert p.get_attribute("data-chunk") == hit["chunk_id"]
        assert p.locator(".score b").text_content() == f"{hit['score']:.3f}"
        assert p.locator(".src").all_text_contents() == hit["sources"]
    first = expected["citations"][0]["n"]
    page.click(f"#answer a.cite[data-n='{first}']")
    page.wait_for_selector(f"#passage-{first}.flash")
    assert "cited" in page.get_attribute(f"#passage-{first}", "class")
    assert page.locator("#passages .src.graph").count() >= 1  # hybrid+graph: the graph found some
    page.wait_for_timeout(1500)  # the flash and the smooth scroll to the passage end
    page.evaluate("window.scrollTo({top: 0, behavior: 'instant'})")
    shot(page, "ask")


def test_graph_draws_the_answers_subgraph_and_loads_a_neighbourhood(app_url, page):
    expected = api(
        app_url,
        "POST",
        "/v1/retrieve",
        json={"collection": "demo", "query": QUESTION, "mode": "hybrid+graph", "top_k": 5},
    )
    page.click("button[data-view=graph]")
    wait_js(page, "state.cy && state.cy.nodes().length > 0")
    nodes = page.evaluate("state.cy.nodes().length")
    linked = page.evaluate("state.cy.nodes('.linked').map(n => n.id()).sort()")
    assert nodes == len(expected["graph"]["nodes"]) > 0
    assert linked == sorted(n["id"] for n in expected["graph"]["nodes"] if n["hops"] == 0) and linked
    # Click a linked entity where it is drawn: its neighbourhood comes from GET /v1/graph/entities/{name}.
    x, y = page.evaluate("""() => { const n = state.cy.nodes('.linked')[0]; const p = n.renderedPosition();
        const r = document.getElementById('cy').getBoundingClientRect(); return [r.left + p.x, r.top + p.y]; }""")
    name = page.evaluate("state.cy.nodes('.linked')[0].data('name')")
    page.mouse.click(x, y)
    wait_js(
        page,
        "document.querySelector('#entity .kv') && document.querySelector('#entity .kv').textContent.includes('neighbours')",
    )
    entity = api(app_url, "GET", f"/v1/graph/entities/{name}", params={"collection": "demo", "hops": 1})
    assert page.text_content("#entity h3") == entity["entity"]["name"]
    drawn = set(page.evaluate("state.cy.nodes().map(n => n.id())"))
    assert {n["id"] for n in entity["neighbours"]} <= drawn
    assert page.locator("#entity li").count() >= 1
    shot(page, "graph")
    # An outer entity (fewest drawn relations): its neighbourhood usually reaches past the answer's subgraph.
    outer = page.evaluate("""() => { const n = state.cy.nodes().not('.linked').sort((a, b) => a.degree() - b.degree())[0];
        const p = n.renderedPosition(); const r = document.getElementById('cy').getBoundingClientRect();
        return [n.data('name'), r.left + p.x, r.top + p.y]; }""")
    page.mouse.click(outer[1], outer[2])
    wait_js(
        page,
        f"document.querySelector('#entity h3').textContent === {outer[0]!r} && document.querySelector('#entity .kv').textContent.includes('neighbours')",
    )
    entity = api(app_url, "GET", f"/v1/graph/entities/{outer[0]}", params={"collection": "demo", "hops": 1})
    assert {n["id"] for n in entity["neighbours"]} <= set(page.evaluate("state.cy.nodes().map(n => n.id())"))


def redraw(page) -> None:
    """Draws state.result's subgraph again, as the "Answer's subgraph" button does."""
    page.click("#graph-reset")
    wait_js(page, "state.graphLoaded && state.cy.nodes().length > 0")


def colour(css: str) -> str:
    return css.replace(" ", "")


def test_graph_colours_entities_by_type_with_a_legend_of_the_types_drawn(page):
    """Fails on main's page: nodes were coloured by hop (all 1-hop entities one blue) and the legend was fixed."""
    page.click("button[data-view=graph]")
    redraw(page)
    drawn = page.evaluate("state.cy.nodes().map(n => [n.data('type'), n.style('background-color')])")
    by_type: dict[str, set[str]] = {}
    for type_, css in drawn:
        by_type.setdefault(type_, set()).add(colour(css))
    assert "PERSON" not in by_type, by_type  # ArcadeDB, Bolt, Cypher: TECH on the demo (en_core_web_sm: PERSON)
    assert all(len(c) == 1 for c in by_type.values()), by_type  # one colour per type, whatever the hop
    assert len({c for cs in by_type.values() for c in cs}) == len(by_type)  # and a different one for each type
    legend = page.evaluate(
        """[...document.querySelectorAll('#graph-legend .legend-type')].map(s => [s.dataset.type, s.textContent,
        getComputedStyle(s.querySelector('.dot')).backgroundColor])"""
    )
    assert {t for t, _, _ in legend} == set(by_type)
    for type_, text, css in legend:
        assert by_type[type_] == {colour(css)}
        assert text.endswith(str(sum(t == type_ for t, _ in drawn)))


def test_relations_are_labelled_by_type_and_co_occurrence_is_faint_and_unlabelled(page):
    """Fails on main's page: every edge was the same grey line, none labelled."""
    page.click("button[data-view=graph]")
    real = page.evaluate("state.result")
    nodes = [
        {"id": "arcadedb", "name": "ArcadeDB", "type": "PRODUCT", "hops": 0, "aliases": []},
        {"id": "bolt", "name": "Bolt", "type": "TECH", "hops": 1, "aliases": []},
        {"id": "neo4j", "name": "Neo4j", "type": "ORG", "hops": 1, "aliases": []},
    ]
    edges = [
        {"source": "arcadedb", "target": "bolt", "type": "SHIPS", "weight": 1},
        {"source": "bolt", "target": "neo4j", "type": "PROTOCOL_OF", "weight": 2},
        {"source": "arcadedb", "target": "neo4j", "type": "CO_OCCURS", "weight": 3},
    ]
    try:
        page.evaluate("g => setResult({...state.result, graph: g}, true)", {"nodes": nodes, "edges": edges})
        redraw(page)
        shown = page.evaluate(
            """state.cy.edges().map(e => [e.data('type'), e.style('label'), Number(e.style('opacity')),
            e.style('target-arrow-shape')])"""
        )
        shown = {t: (label, opacity, arrow) for t, label, opacity, arrow in shown}
        colours = page.evaluate("state.cy.nodes().map(n => n.style('background-color'))")
        assert len(set(colours)) == 3  # PRODUCT, TECH, ORG: three colours
        assert shown["SHIPS"][0] == "ships" and shown["PROTOCOL_OF"][0] == "protocol of"
        assert shown["SHIPS"][2] == "triangle"  # typed relations have a direction
        assert shown["CO_OCCURS"][0] == "" and shown["CO_OCCURS"][1] < 0.5 < shown["SHIPS"][1]
        assert "co-occurrence (1)" in page.text_content("#graph-key")
    finally:
        page.evaluate("r => setResult(r, true)", real)
        redraw(page)


def test_the_demo_graph_states_typed_relations_and_the_panel_shows_them(app_url, page):
    """On the demo collection with the default extractor: the answer's subgraph has labelled, typed relations
    (main's pattern extractor stated only co-occurrence), ArcadeDB is TECH (not PERSON) with a neighbourhood, and
    the side panel shows its type, its typed relations and what it is only named beside."""
    page.click("button[data-view=graph]")
    redraw(page)
    entity = api(app_url, "GET", "/v1/graph/entities/ArcadeDB", params={"collection": "demo", "hops": 1})
    assert entity["entity"]["type"] == "TECH" and entity["neighbours"]
    page.evaluate(
        """e => loadEntity(state.cy.getElementById(e.id).nonempty() ? state.cy.getElementById(e.id)
        : state.cy.add(graphElements([e], [], {loaded: true})))""",
        entity["entity"],
    )
    wait_js(page, "document.querySelector('#entity .type-badge') !== null")
    assert page.text_content("#entity h3") == entity["entity"]["name"]
    assert page.text_content("#entity .type-badge") == "TECH"
    typed = [r for r in entity["relations"] if r["type"] not in ("CO_OCCURS", "RELATED_TO")]
    assert typed, entity["relations"]  # "ArcadeDB is a multi-model database written in Java"
    shown = page.locator("#entity ul.relations li").evaluate_all("ls => ls.map(l => l.dataset.type)")
    assert shown == [r["type"] for r in typed[:25]]
    beside = [r for r in entity["relations"] if r["type"] == "CO_OCCURS"]
    if beside:
        assert page.text_content("#entity .cooccurs")
    # Drawn: "ArcadeDB —written in→ Java" as a labelled arrow, what it is only named beside as faint lines.
    drawn = page.evaluate(
        "state.cy.edges().map(e => [e.source().id(), e.data('type'), e.target().id(), e.style('label'), e.hasClass('typed')])"
    )
    assert ["arcadedb", "WRITTEN_IN", "java", "written in", True] in drawn, drawn
    assert all(label == "" and not typed for _, t, _, label, typed in drawn if t == "CO_OCCURS")
    shot(page, "graph-entity")


def test_the_side_panel_lists_an_entitys_aliases(app_url, page):
    """Main's panel showed no aliases: here the explorer's aliases of an entity are listed under "Also called"."""
    text = "Rudolph Giuliani was the mayor of New York City. Giuliani was born in Brooklyn."
    api(app_url, "POST", "/v1/ingest", json={"collection": "uialias", "documents": [{"id": "giuliani", "text": text}]})
    entity = api(app_url, "GET", "/v1/graph/entities/Giuliani", params={"collection": "uialias", "hops": 1})
    assert "giuliani" in entity["entity"]["aliases"]
    page.click("button[data-view=graph]")
    page.evaluate(
        """async () => { const e = await api("GET", "v1/graph/entities/Giuliani?collection=uialias&hops=1");
        document.getElementById("entity").replaceChildren(...entityPanel(e, 0)); }"""
    )
    assert page.text_content("#entity h3") == entity["entity"]["name"] == "Rudolph Giuliani"
    assert page.locator("#entity ul.aliases li").all_text_contents() == entity["entity"]["aliases"]
    assert page.text_content("#entity .type-badge") == "PERSON"


def test_timing_waterfall_shows_the_vector_then_the_graph_stage(page):
    page.click("button[data-view=timing]")
    for stage in ("embed", "vector", "graph", "rerank", "chat", "total"):
        assert page.locator(f"#waterfall .wf-row[data-stage={stage}] .wf-bar").count() == 1, stage
    result = page.evaluate("state.result.timings")

    def bar(s: str) -> list[float]:
        return page.evaluate(
            f"(() => {{ const b = document.querySelector('#waterfall .wf-row[data-stage={s}] .wf-bar').getBoundingClientRect(); return [b.left, b.right]; }})()"
        )

    (v_left, v_right), (g_left, g_right) = bar("vector"), bar("graph")
    # Drawn from the response's offsets: with the embedded store the graph is called once the vector's dense hits
    # are in (retrieval.graph_seeds), so its bar starts where the vector's ends.
    vector_end = result["vector"]["start_ms"] + result["vector"]["duration_ms"]
    assert result["graph"]["start_ms"] >= vector_end - 1
    assert g_left >= v_right - 2 and v_left < g_left
    assert page.locator("#waterfall .wf-axis .ticks span").count() >= 2
    assert "vector → graph" in page.text_content("#waterfall .wf-caption")
    shot(page, "timing")
    # Stages awaited together (graph_seeds: lookup, a Qdrant server) draw overlapping bars and say so.
    page.evaluate(
        """setResult({...state.result, timings: {...state.result.timings,
            graph: {start_ms: state.result.timings.vector.start_ms, duration_ms: state.result.timings.vector.duration_ms}}}, true)"""
    )
    (v_left, v_right), (g_left, g_right) = bar("vector"), bar("graph")
    assert g_left < v_right and v_left < g_right
    assert "vector ∥ graph" in page.text_content("#waterfall .wf-caption")
    # A degraded stage is marked with its reason: the same response, as if the reranker had timed out.
    page.evaluate("""setResult({...state.result, degraded: [{stage: 'rerank', error: 'timed out after 2s'}]}, true)""")
    assert "degraded" in page.get_attribute("#waterfall .wf-row[data-stage=rerank]", "class")
    assert "degraded" in page.get_attribute("#waterfall .wf-row[data-stage=rerank] .wf-bar", "class")
    assert "timed out after 2s" in page.text_content("#waterfall .wf-error")
    assert page.locator("#waterfall .wf-row.degraded").count() == 1
    shot(page, "timing-degraded")


def test_ingest_through_the_page_then_find_it_and_delete_it(app_url, page, tmp_path):
    upload = tmp_path / "lighthouse-log.md"
    upload.write_text(
        "# Lighthouse log\n\nThe Zephyrine lighthouse on Quorvex Island is kept by Ottilie Marchbank. "
        "She logs every ship that passes the Quorvex strait in a green ledger.\n"
    )
    page.click("button[data-view=ingest]")
    page.fill("#ingest-collection", "uitest")
    page.set_input_files("#ingest-files", str(upload))
    page.fill("#paste-id", "harbour-notes")
    page.fill(
        "#paste-text", "The harbour of Quorvex Island freezes every February, so the ferry from Brindlemouth stops."
    )
    page.click("#ingest-submit")
    wait_js(page, "document.getElementById('ingest-log').textContent.includes('2 of 2 ingested into uitest')")
    assert page.evaluate("document.getElementById('ingest-bar').style.width") == "100%"
    page.wait_for_selector("#docs tr[data-doc='harbour-notes']")
    assert page.locator("#docs tr[data-doc='lighthouse-log']").count() == 1
    assert api(app_url, "GET", "/v1/collections/uitest")["points"] >= 2
    shot(page, "ingest")

    ask(page, "uitest", "Who keeps the Zephyrine lighthouse?", mode="hybrid")
    assert page.get_attribute("#passages > li:first-child", "data-chunk").startswith("lighthouse-log")
    assert "Ottilie Marchbank" in page.text_content("#answer")

    page.click("button[data-view=ingest]")
    page.wait_for_selector("#docs tr[data-doc='harbour-notes']")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#docs tr[data-doc='harbour-notes'] button.danger")
    page.wait_for_selector("#docs tr[data-doc='harbour-notes']", state="detached")
    assert re.search(r"Deleted harbour-notes: \d+ points", page.text_content("#banner"))
    assert page.locator("#docs tr[data-doc='lighthouse-log']").count() == 1


def test_stages_show_replicas_and_the_stage_window(page):
    page.click("button[data-view=stages]")
    page.wait_for_selector("#replicas tr[data-deployment=Ingress]")
    deployments = page.locator("#replicas tr").evaluate_all("rows => rows.map(r => r.dataset.deployment)")
    assert {"Ingress", "Embedder", "Vector", "Graph", "Reranker", "Chat", "BoltServer"} <= set(deployments)
    assert all(int(t) >= 1 for t in page.locator("#replicas .running").all_text_contents())
    assert "HEALTHY" in page.text_content("#replicas tr[data-deployment=Vector]")
    # The answers asked above went through this ingress: its window counts them per stage.
    wait_js(
        page, "Number(document.querySelector('#stage-stats tr[data-stage=vector] td:nth-child(6)').textContent) >= 2"
    )
    assert page.locator("#stage-stats tr[data-stage=graph] svg.spark polyline").count() >= 1
    assert page.text_content("#stage-stats tr[data-stage=vector] td:nth-child(4)") != "—"
    page.evaluate("hideBanner()")
    shot(page, "stages")


def test_a_key_limited_to_one_collection_sees_only_it(app_url, page):
    if os.environ.get("GRAPHRAG_UI_TEST_URL"):
        pytest.skip("needs the test's own app (its limited key)")
    page.click("button[data-view=ask]")
    page.select_option("#ask-collection", "uitest")  # the page keeps the chosen collection: one the key may see
    page.click("#key-forget")
    page.fill("#api-key", LIMITED_KEY)
    page.click("#key-save")
    page.click("button[data-view=ask]")
    wait_js(page, "[...document.querySelectorAll('#ask-collection option')].map(o => o.value).join() === 'uitest'")
    assert page.is_hidden("#collections-error")
    page.click("#key-forget")
    page.fill("#api-key", KEY)
    page.click("#key-save")
    page.wait_for_selector("#ask-collection option[value='demo']", state="attached")


def test_no_script_errors_and_no_graph_queries(page):
    assert page.errors == []
    # The collection picker and the document list come from GET /v1/collections[/{c}/documents], never from the
    # admin-only Cypher route.
    assert any(r.startswith("GET ") and r.endswith("/v1/collections") for r in page.requests)
    assert any("/documents?" in r for r in page.requests)
    assert not [r for r in page.requests if "/v1/graph/query" in r]
