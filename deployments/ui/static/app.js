// graphrag-serve web page: plain JS, no build step. Everything it shows comes from the /v1 API, called with the
// API key the user typed (kept in sessionStorage for this tab only, sent as a header, never put in a URL).
"use strict";

const KEY_STORAGE = "graphrag.apiKey";
const API = new URL("../", document.baseURI); // the page is /ui/: the API is beside it
const STAGE_ORDER = ["embed", "vector", "graph", "rerank", "chat", "total"];
const state = { collection: null, result: null, graphLoaded: false, cy: null, statsTimer: null, ingesting: false };

const $ = (id) => document.getElementById(id);

// DOM helper: el("div", {class: "x", onclick: f}, "text", child, ...). Text is always set as text, never as HTML.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}

const fmtMs = (ms) => (ms === null || ms === undefined ? "—" : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);

// ---- API --------------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(`HTTP ${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    this.status = status;
  }
}

function apiKey() { return sessionStorage.getItem(KEY_STORAGE) || ""; }

function headers(json = true) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = apiKey();
  if (key) h["X-API-Key"] = key;
  return h;
}

async function raiseFor(resp) {
  if (resp.ok) return;
  let detail = resp.statusText;
  try { detail = (await resp.json()).detail ?? detail; } catch (_) { /* not JSON */ }
  if (resp.status === 401) showBanner(`The server needs an API key: ${detail}. Enter it at the top right.`);
  throw new ApiError(resp.status, detail);
}

async function api(method, path, body) {
  const resp = await fetch(new URL(path, API), {
    method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body),
  });
  await raiseFor(resp);
  return resp.json();
}

// POST with `stream: true`: reads the Server-Sent Events and calls onEvent for each JSON `data:` line.
async function streamEvents(path, body, onEvent, signal) {
  const resp = await fetch(new URL(path, API), { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  await raiseFor(resp);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data));
    }
  }
}

function showBanner(text, kind = "error") {
  const b = $("banner");
  b.textContent = text;
  b.className = `banner ${kind === "info" ? "info" : ""}`;
  b.hidden = false;
  clearTimeout(state.bannerTimer);
  if (kind === "info") state.bannerTimer = setTimeout(hideBanner, 6000);
}
function hideBanner() { $("banner").hidden = true; }

// ---- tabs, key, readiness ------------------------------------------------------------------------------

function showView(name) {
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.view === name);
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("active", v.id === `view-${name}`);
  if (name === "graph") drawGraph();
  if (name === "stages") startStats(); else stopStats();
  if (name === "ingest") loadDocuments();
  history.replaceState(null, "", `#${name}`);
}

function setupKey() {
  const input = $("api-key");
  const refreshKeyUi = () => {
    const has = Boolean(apiKey());
    $("key-forget").hidden = !has;
    input.placeholder = has ? "key saved for this tab" : "API key (if the server needs one)";
  };
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(KEY_STORAGE, input.value.trim());
    input.value = "";
    refreshKeyUi();
    hideBanner();
    loadCollections();
  });
  $("key-forget").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORAGE); refreshKeyUi(); });
  refreshKeyUi();
}

async function checkReady() {
  const r = $("ready");
  try {
    const resp = await fetch(new URL("readyz", API));
    const body = await resp.json();
    const down = Object.entries(body.stages || {}).filter(([, s]) => !s.ok).map(([n]) => n);
    r.className = `ready ${body.ready ? "ok" : "bad"}`;
    r.textContent = body.ready ? "ready" : `not ready: ${down.join(", ")}`;
    r.title = Object.entries(body.stages || {}).map(([n, s]) => `${n}: ${s.backend}${s.ok ? "" : ` (${s.error})`}`).join("\n");
  } catch (err) {
    r.className = "ready bad";
    r.textContent = "unreachable";
  }
}

// ---- collections (GET /v1/collections: those this key may access) --------------------------------------

async function listCollections() {
  return (await api("GET", "v1/collections")).collections; // sorted by name
}

async function loadCollections() {
  const select = $("ask-collection");
  let names = [];
  let listed = [];
  try {
    listed = await listCollections();
    names = listed.map((c) => c.collection);
    $("collections-error").hidden = true;
  } catch (err) {
    // Said beside the picker, not in the banner: the page stays usable (a collection can be typed at ingest).
    const note = $("collections-error");
    note.textContent = err.status === 401 ? "" : `Could not list the collections (${err.message}).`;
    note.hidden = err.status === 401;
  }
  const current = state.collection || select.value || (names.includes("demo") ? "demo" : names[0]);
  select.replaceChildren(...listed.map((c) => el("option", { value: c.collection, title: `${c.points} chunks` },
    `${c.collection} (${c.documents} ${c.documents === 1 ? "doc" : "docs"})`)));
  if (current && !names.includes(current)) select.append(el("option", { value: current }, current));
  if (current) select.value = current;
  state.collection = select.value || null;
  $("collection-list").replaceChildren(...names.map((n) => el("option", { value: n })));
  if (state.collection && !$("ingest-collection").dataset.touched) $("ingest-collection").value = state.collection;
}

// ---- Ask ----------------------------------------------------------------------------------------------

function renderAnswer(text, nPassages) {
  const box = $("answer");
  box.classList.remove("placeholder");
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(/\[(\d+)\]/g)) {
    const n = Number(m[1]);
    if (n < 1 || n > nPassages) continue;
    parts.push(text.slice(last, m.index));
    parts.push(el("a", { class: "cite", href: `#passage-${n}`, "data-n": n, onclick: (e) => { e.preventDefault(); flashPassage(n); } }, `[${n}]`));
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  box.replaceChildren(...parts);
}

function flashPassage(n) {
  const p = $(`passage-${n}`);
  if (!p) return;
  p.scrollIntoView({ behavior: "smooth", block: "center" });
  p.classList.add("flash");
  setTimeout(() => p.classList.remove("flash"), 1400);
}

function renderPassages(hits, cited = new Set()) {
  $("passage-count").textContent = hits.length ? `(${hits.length})` : "";
  $("passages").replaceChildren(...hits.map((h, i) => {
    const n = i + 1;
    const text = el("div", { class: "passage-text" }, h.text);
    const more = el("button", { type: "button", class: "more", onclick: () => { text.classList.toggle("open"); more.textContent = text.classList.contains("open") ? "less" : "more"; } }, "more");
    return el("li", { id: `passage-${n}`, class: `passage${cited.has(n) ? " cited" : ""}`, "data-chunk": h.chunk_id },
      el("div", { class: "passage-head" },
        el("span", { class: "passage-n" }, `[${n}]`),
        el("span", { class: "doc" }, h.doc_id),
        el("span", { class: "chunk" }, h.chunk_id),
        ...h.sources.map((s) => el("span", { class: `src ${s}`, title: `found by the ${s} source` }, s)),
        el("span", { class: "score" }, "score ", el("b", {}, h.score.toFixed(3)))),
      text, h.text.length > 320 ? more : null);
  }));
}

function renderSummary(r) {
  const t = r.timings || {};
  const rows = [
    ["collection", r.collection], ["mode", r.mode || "—"], ["reranker", r.reranker || "skipped"],
    ["model", r.model || "—"], ["passages", String(r.hits.length)],
    ["graph", `${r.graph.nodes.length} entities, ${r.graph.edges.length} relations`],
    ["total", fmtMs(t.total ? t.total.duration_ms : null)],
  ];
  const dl = $("summary");
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  for (const d of r.degraded || []) dl.append(el("dt", { class: "bad" }, "degraded"), el("dd", {}, el("span", { class: "badge bad", title: d.error }, d.stage)));
  drawWaterfall($("mini-waterfall"), r, { compact: true });
}

function setAnswerMeta(r, cited) {
  const meta = $("answer-meta");
  const items = [el("span", { class: "badge" }, `model: ${r.model}`)];
  if (cited) items.push(el("span", { class: "badge" }, `${cited.size} cited`));
  for (const d of r.degraded || []) items.push(el("span", { class: "badge bad", title: d.error }, `degraded: ${d.stage}`));
  meta.replaceChildren(...items);
}

async function ask(e) {
  e.preventDefault();
  const question = $("ask-question").value.trim();
  if (!question) return;
  const collection = $("ask-collection").value;
  if (!collection) { showBanner("Choose a collection (ingest documents first if there is none)."); return; }
  state.collection = collection;
  hideBanner();
  const body = { collection, query: question, mode: $("ask-mode").value, top_k: Number($("ask-topk").value) || 5, stream: true };
  const button = $("ask-submit");
  button.disabled = true;
  const status = $("answer-status");
  const box = $("answer");
  box.classList.remove("placeholder");
  box.classList.add("streaming");
  box.textContent = "";
  $("answer-meta").replaceChildren();
  status.textContent = "retrieving…";
  const started = performance.now();
  let text = "";
  let hits = [];
  try {
    await streamEvents("v1/answer", body, (ev) => {
      if (ev.type === "references") {
        hits = ev.hits;
        renderPassages(hits);
        setResult(ev, false);
        status.textContent = `answering (${ev.model})…`;
      } else if (ev.type === "delta") {
        text += ev.content;
        renderAnswer(text, hits.length);
      } else if (ev.type === "done") {
        const cited = new Set(ev.citations.map((c) => c.n));
        renderAnswer(ev.answer, ev.hits.length);
        renderPassages(ev.hits, cited);
        setAnswerMeta(ev, cited);
        setResult(ev, true);
        status.textContent = `answered in ${fmtMs(performance.now() - started)}`;
      } else if (ev.type === "error") {
        status.textContent = "";
        showBanner(`The answer broke off (${ev.stage}): ${ev.detail}`);
      }
    });
  } catch (err) {
    status.textContent = "";
    box.textContent = "";
    showBanner(`The question failed: ${err.message}`);
  } finally {
    box.classList.remove("streaming");
    button.disabled = false;
  }
}

function setResult(r, final) {
  state.result = r;
  state.graphLoaded = false;
  renderSummary(r);
  drawWaterfall($("waterfall"), r, { compact: false });
  $("timing-status").textContent = final ? `“${r.query}”` : "waiting for the answer…";
  if ($("view-graph").classList.contains("active")) drawGraph();
}

// ---- Timing -------------------------------------------------------------------------------------------

function niceStep(total) {
  const raw = total / 8;
  const pow = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) || pow * 10;
}

function drawWaterfall(container, r, { compact }) {
  const timings = r.timings || {};
  const failed = new Map();
  for (const d of r.degraded || []) failed.set(d.stage === "lexical" ? "vector" : d.stage, `${d.stage}: ${d.error}`);
  const stages = STAGE_ORDER.filter((s) => timings[s] || failed.has(s)).filter((s) => !(compact && s === "total"));
  if (!stages.length) { container.replaceChildren(el("div", { class: "empty" }, "No timings.")); return; }
  const end = Math.max(...Object.values(timings).filter(Boolean).map((t) => t.start_ms + t.duration_ms), 1);
  const rows = stages.map((s) => {
    const t = timings[s];
    const bad = failed.get(s);
    const bar = t ? el("div", {
      class: `wf-bar ${s}${bad ? " degraded" : ""}`,
      title: `${s}: starts at +${fmtMs(t.start_ms)}, takes ${fmtMs(t.duration_ms)}${bad ? ` — degraded (${bad})` : ""}`,
      style: { left: `${(t.start_ms / end) * 100}%`, width: `${(t.duration_ms / end) * 100}%` },
    }) : null;
    const row = el("div", { class: `wf-row${bad ? " degraded" : ""}`, "data-stage": s },
      el("span", { class: "wf-label" }, s, bad && !compact ? " ⚠" : ""),
      el("div", { class: "wf-track", style: compact ? {} : { backgroundSize: `${(niceStep(end) / end) * 100}% 100%` } }, bar),
      el("span", { class: "wf-ms" }, t ? (compact ? fmtMs(t.duration_ms) : `+${fmtMs(t.start_ms)} · ${fmtMs(t.duration_ms)}`) : "failed"));
    return compact || !bad ? row : [row, el("div", { class: "wf-row" }, el("span"), el("div", { class: "wf-error" }, `degraded — ${bad}`))];
  }).flat();
  if (!compact) {
    const step = niceStep(end);
    const ticks = [];
    for (let v = 0; v <= end + 1e-9; v += step) ticks.push(el("span", { style: { left: `${(v / end) * 100}%` } }, fmtMs(v)));
    rows.push(el("div", { class: "wf-axis" }, el("span"), el("div", { class: "ticks" }, ticks), el("span")));
    if (timings.vector && timings.graph) {
      const from = Math.max(timings.vector.start_ms, timings.graph.start_ms);
      const to = Math.min(timings.vector.start_ms + timings.vector.duration_ms, timings.graph.start_ms + timings.graph.duration_ms);
      if (to > from) rows.push(el("div", { class: "wf-caption" }, el("b", {}, "vector ∥ graph"), ` ran at the same time for ${fmtMs(to - from)}`));
      else rows.push(el("div", { class: "wf-caption" }, el("b", {}, "vector → graph"), " the graph walked from the vector stage's best passages (retrieval.graph_seeds)"));
    }
  }
  container.replaceChildren(...rows);
}

// ---- Graph --------------------------------------------------------------------------------------------

// Entities are coloured by their type (the graph schema's, deployments/README.md "Graph schema"); the hop from the
// question is drawn as size and ring. Typed relations are labelled arrows; co-occurrence (named in one sentence,
// nothing parsed between) is no fact: a faint, unlabelled line.
const TYPE_COLOURS = {
  PERSON: "#e11d48", ORG: "#2563eb", GPE: "#059669", LOC: "#0d9488", NORP: "#a16207", FAC: "#7c2d12",
  WORK: "#9333ea", EVENT: "#ea580c", PRODUCT: "#0891b2", TECH: "#4f46e5", LAW: "#64748b", LANGUAGE: "#be185d",
  DATE: "#ca8a04", ACRONYM: "#0369a1", ENTITY: "#475569", TERM: "#7e22ce", CONCEPT: "#94a3b8", OTHER: "#94a3b8",
};
const UNTYPED_RELATIONS = new Set(["CO_OCCURS", "RELATED_TO"]);

function typeColour(type) {
  if (TYPE_COLOURS[type]) return TYPE_COLOURS[type];
  let h = 0; // a type outside the schema (an LLM's own): a stable hue from its name
  for (const ch of String(type)) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${h}, 55%, 45%)`;
}

const relationLabel = (type) => type.toLowerCase().replace(/_/g, " ");
const isTyped = (type) => !UNTYPED_RELATIONS.has(type);

const GRAPH_STYLE = [
  { selector: "node", style: {
    "background-color": "data(colour)", label: "data(label)", "font-size": 10, color: "#1f2937", "text-valign": "bottom",
    "text-margin-y": 4, width: 14, height: 14, "text-wrap": "ellipsis", "text-max-width": 120,
    "text-background-color": "#fbfbfd", "text-background-opacity": 0.85, "text-background-padding": 1,
  } },
  { selector: "node[hops = 1]", style: { width: 20, height: 20 } },
  { selector: "node.linked", style: {
    width: 30, height: 30, "font-size": 12, "font-weight": 700, "border-width": 4, "border-color": "#111827",
    "border-opacity": 0.25,
  } },
  { selector: "node.loaded", style: { "border-width": 2, "border-style": "dashed", "border-color": "#475569" } },
  { selector: "node:selected", style: { "border-width": 4, "border-color": "#111827", "border-opacity": 1 } },
  { selector: "edge", style: {
    width: 1, "line-color": "#cbd5e1", "curve-style": "haystack", opacity: 0.35,
  } },
  { selector: "edge.typed", style: {
    width: "mapData(weight, 1, 10, 1.5, 4)", "line-color": "#64748b", "curve-style": "bezier", opacity: 0.95,
    "target-arrow-shape": "triangle", "target-arrow-color": "#64748b", "arrow-scale": 0.8,
    label: "data(label)", "font-size": 9, color: "#334155", "text-rotation": "autorotate",
    "text-background-color": "#fbfbfd", "text-background-opacity": 0.9, "text-background-padding": 1,
  } },
  { selector: "edge.focus", style: { "line-color": "#6366f1", "target-arrow-color": "#6366f1", opacity: 1 } },
  { selector: "edge.focus.faint", style: { opacity: 0.5 } },
];

function graphElements(nodes, edges, extra = {}) {
  const els = nodes.map((n) => ({
    group: "nodes",
    data: { id: n.id, label: n.name, name: n.name, type: n.type, hops: n.hops, aliases: n.aliases || [], colour: typeColour(n.type) },
    classes: n.hops === 0 && !extra.loaded ? "linked" : extra.loaded ? "loaded" : "",
  }));
  for (const e of edges) {
    els.push({
      group: "edges",
      data: { id: `${e.source}|${e.type}|${e.target}`, source: e.source, target: e.target, type: e.type, weight: e.weight,
        label: isTyped(e.type) ? relationLabel(e.type) : "" },
      classes: isTyped(e.type) ? "typed" : "faint",
    });
  }
  return els;
}

// The legend lists the types drawn, in their colours, with how many of each; then what sizes and lines mean.
function drawLegend() {
  const counts = new Map();
  if (state.cy) state.cy.nodes().forEach((n) => counts.set(n.data("type"), (counts.get(n.data("type")) || 0) + 1));
  const types = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  $("graph-legend").replaceChildren(
    ...types.map(([type, n]) => el("span", { class: "legend-type", "data-type": type },
      el("i", { class: "dot", style: { background: typeColour(type) } }), `${type.toLowerCase()} ${n}`)),
  );
  const cooccurs = state.cy ? state.cy.edges().not(".typed").length : 0;
  $("graph-key").replaceChildren(
    el("span", {}, el("i", { class: "dot big" }), "linked by the question"),
    el("span", {}, el("i", { class: "dot dashed" }), "loaded on click"),
    el("span", {}, el("i", { class: "line typed" }), "typed relation (labelled)"),
    el("span", {}, el("i", { class: "line faint" }), `co-occurrence${cooccurs ? ` (${cooccurs})` : ""}`),
  );
}

function ensureCy() {
  if (state.cy) return state.cy;
  if (typeof cytoscape !== "function") { $("graph-status").textContent = "Cytoscape.js did not load"; return null; }
  state.cy = cytoscape({ container: $("cy"), style: GRAPH_STYLE, wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 3 });
  state.cy.on("tap", "node", (evt) => loadEntity(evt.target));
  return state.cy;
}

function runLayout(cy, randomize) {
  cy.layout({
    name: "cose", animate: false, randomize, nodeDimensionsIncludeLabels: true, padding: 30, numIter: 2500,
    nodeRepulsion: () => 60000, idealEdgeLength: () => 110, edgeElasticity: () => 60, gravity: 0.4, componentSpacing: 80,
  }).run();
  cy.fit(undefined, 30);
}

function drawGraph() {
  const cy = ensureCy();
  if (!cy || state.graphLoaded) return;
  const g = state.result ? state.result.graph : { nodes: [], edges: [] };
  cy.elements().remove();
  const ids = new Set(g.nodes.map((n) => n.id));
  cy.add(graphElements(g.nodes, g.edges.filter((e) => ids.has(e.source) && ids.has(e.target))));
  $("graph-empty").hidden = g.nodes.length > 0;
  const linked = g.nodes.filter((n) => n.hops === 0).length;
  $("graph-status").textContent = g.nodes.length ? `${g.nodes.length} entities · ${g.edges.length} relations · ${linked} linked by the question` : "";
  // Draw after the view is laid out, so the canvas has its size.
  requestAnimationFrame(() => { cy.resize(); runLayout(cy, true); });
  state.graphLoaded = true;
  drawLegend();
  $("entity").replaceChildren(el("span", { class: "muted" }, "Click an entity to load its neighbourhood."));
}

function nameOf(id) {
  const n = state.cy && state.cy.getElementById(id);
  return n && n.nonempty() ? n.data("name") : id;
}

// The side panel: the entity's type (in its colour), its other names, its typed relations as sentences
// ("ArcadeDB — ships → Bolt"), then what it is only named beside (co-occurrence), then its documents.
function entityPanel(e, added) {
  const typed = e.relations.filter((r) => isTyped(r.type));
  const beside = e.relations.filter((r) => !isTyped(r.type)).sort((a, b) => b.weight - a.weight);
  const other = (r) => nameOf(r.source === e.entity.id ? r.target : r.source);
  const parts = [
    el("h3", {}, e.entity.name),
    el("div", { class: "kv" },
      el("span", { class: "type-badge", "data-type": e.entity.type, style: { background: typeColour(e.entity.type) } }, e.entity.type),
      ` · ${e.neighbours.length} neighbours · ${added} added to the drawing`),
    el("strong", {}, "Also called"),
    e.entity.aliases.length
      ? el("ul", { class: "aliases" }, e.entity.aliases.map((a) => el("li", {}, a)))
      : el("p", { class: "aliases muted" }, "no other names found"),
    el("strong", {}, `Relations (${typed.length})`),
    typed.length
      ? el("ul", { class: "relations" }, typed.slice(0, 25).map((r) => el("li", { "data-type": r.type },
        `${nameOf(r.source)} `, el("span", { class: "rel-type" }, `— ${relationLabel(r.type)} →`), ` ${nameOf(r.target)}`,
        el("span", { class: "muted" }, ` ×${r.weight}`))))
      : el("p", { class: "relations muted" }, "no typed relation stated about it"),
  ];
  if (beside.length) {
    parts.push(el("strong", {}, `Named beside (${beside.length})`),
      el("p", { class: "cooccurs muted" }, beside.slice(0, 15).map(other).join(", ")));
  }
  parts.push(el("strong", {}, "Mentioned in"), el("ul", {}, e.doc_ids.map((d) => el("li", {}, d))));
  return parts;
}

async function loadEntity(node) {
  const name = node.data("name");
  const collection = state.result ? state.result.collection : state.collection;
  const box = $("entity");
  box.replaceChildren(el("h3", {}, name), el("div", { class: "kv" }, "loading the neighbourhood…"));
  try {
    const e = await api("GET", `v1/graph/entities/${encodeURIComponent(name)}?collection=${encodeURIComponent(collection)}&hops=1`);
    const cy = state.cy;
    const fresh = e.neighbours.filter((n) => cy.getElementById(n.id).empty());
    cy.add(graphElements(fresh, [], { loaded: true }));
    const newEdges = e.edges.filter((x) => cy.getElementById(`${x.source}|${x.type}|${x.target}`).empty()
      && !cy.getElementById(x.source).empty() && !cy.getElementById(x.target).empty());
    cy.add(graphElements([], newEdges));
    cy.edges().removeClass("focus");
    const self = cy.getElementById(e.entity.id).nonempty() ? cy.getElementById(e.entity.id) : node;
    self.connectedEdges().addClass("focus");
    cy.$(":selected").unselect();
    self.select();
    if (fresh.length) runLayout(cy, false);
    $("graph-status").textContent = `${cy.nodes().length} entities · ${cy.edges().length} relations`;
    drawLegend();
    box.replaceChildren(...entityPanel(e, fresh.length));
  } catch (err) {
    box.replaceChildren(el("h3", {}, name), el("div", { class: "kv bad" }, `could not load: ${err.message}`));
  }
}

// ---- Ingest -------------------------------------------------------------------------------------------

function docIdOf(fileName) { return fileName.replace(/\.(md|markdown|txt)$/i, "").slice(0, 256); }

function renderFileList() {
  const files = [...$("ingest-files").files];
  $("file-list").textContent = files.length ? files.map((f) => f.name).join(", ") : "";
}

async function ingest(e) {
  e.preventDefault();
  if (state.ingesting) return;
  const collection = $("ingest-collection").value.trim();
  const items = [];
  for (const f of $("ingest-files").files) items.push({ id: docIdOf(f.name), name: f.name, read: () => f.text() });
  const pasted = $("paste-text").value;
  if (pasted.trim()) {
    const id = $("paste-id").value.trim() || `pasted-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    items.push({ id, name: id, read: async () => pasted });
  }
  if (!items.length) { showBanner("Choose files or paste a text to ingest.", "info"); return; }
  hideBanner();
  state.ingesting = true;
  $("ingest-submit").disabled = true;
  const log = $("ingest-log");
  log.replaceChildren();
  const bar = $("ingest-bar");
  bar.style.width = "0%";
  let done = 0;
  let failed = 0;
  // One request per document: progress per document, and one bad file does not fail the others.
  for (const item of items) {
    const line = el("li", {}, el("span", { class: "busy" }, "…"), el("span", {}, item.name));
    log.append(line);
    try {
      const text = await item.read();
      const r = await api("POST", "v1/ingest", { collection, documents: [{ id: item.id, text, metadata: { source: item.name, via: "web" } }] });
      line.replaceChildren(el("span", { class: "ok" }, "✓"), el("span", {}, `${item.name} → ${item.id}: ${r.chunks} chunks, ${r.entities} entities, ${r.relations} relations`));
    } catch (err) {
      failed += 1;
      line.replaceChildren(el("span", { class: "bad" }, "✗"), el("span", {}, `${item.name}: ${err.message}`));
    }
    done += 1;
    bar.style.width = `${(100 * done) / items.length}%`;
  }
  log.append(el("li", { class: failed ? "bad" : "ok" }, `${done - failed} of ${items.length} ingested into ${collection}`));
  state.ingesting = false;
  $("ingest-submit").disabled = false;
  $("ingest-files").value = "";
  renderFileList();
  if (!failed) { $("paste-text").value = ""; $("paste-id").value = ""; }
  state.collection = collection;
  await loadCollections();
  await loadDocuments();
}

const DOC_PAGE = 500;
const DOC_PAGES = 20; // the table lists at most 10,000 documents

// The collection's documents, a page at a time (GET /v1/collections/{c}/documents); none when it does not exist.
async function listDocuments(collection) {
  const docs = [];
  let cursor = null;
  for (let i = 0; i < DOC_PAGES; i += 1) {
    const query = new URLSearchParams({ limit: DOC_PAGE });
    if (cursor) query.set("cursor", cursor);
    let page;
    try {
      page = await api("GET", `v1/collections/${encodeURIComponent(collection)}/documents?${query}`);
    } catch (err) {
      if (err.status === 404) return { docs: [], more: false };
      throw err;
    }
    docs.push(...page.documents);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return { docs, more: Boolean(cursor) };
}

async function loadDocuments() {
  const collection = $("ingest-collection").value.trim();
  $("docs-collection").textContent = collection || "—";
  const tbody = $("docs");
  if (!collection) { tbody.replaceChildren(); return; }
  try {
    const [{ docs, more }, stats] = await Promise.all([
      listDocuments(collection),
      api("GET", `v1/collections/${encodeURIComponent(collection)}`).catch((err) => (err.status === 404 ? null : Promise.reject(err))),
    ]);
    $("docs-stats").textContent = stats
      ? `${stats.points} points · ${stats.chunks} chunks · ${stats.entities} entities · ${stats.relations} relations`
      : "This collection does not exist yet.";
    const rows = docs.sort((a, b) => a.doc_id.localeCompare(b.doc_id));
    tbody.replaceChildren(...rows.map(({ doc_id: doc, chunks }) => el("tr", { "data-doc": doc },
      el("td", {}, doc), el("td", { class: "num" }, chunks),
      el("td", { class: "num" }, el("button", { type: "button", class: "danger", onclick: () => deleteDocument(collection, doc) }, "Delete")))));
    if (more) tbody.append(el("tr", {}, el("td", { colspan: 3, class: "muted" }, `first ${docs.length} documents shown`)));
  } catch (err) {
    $("docs-stats").textContent = `Could not list the documents: ${err.message}`;
    tbody.replaceChildren();
  }
}

async function deleteDocument(collection, doc) {
  if (!confirm(`Delete “${doc}” from ${collection} (vector and graph stores)?`)) return;
  try {
    const r = await api("DELETE", `v1/documents/${encodeURIComponent(doc)}?collection=${encodeURIComponent(collection)}`);
    showBanner(`Deleted ${r.doc_id}: ${r.points} points, ${r.chunks} chunks.`, "info");
  } catch (err) {
    showBanner(`Could not delete ${doc}: ${err.message}`);
  }
  await loadDocuments();
}

// ---- Stages -------------------------------------------------------------------------------------------

// A small SVG chart, newest value at the right; `slots` fixes the time scale while the history is still short.
function sparkline(values, { bars = false, width = 180, height = 28, zero = false, slots = 0 } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const max = Math.max(...values.map((v) => v || 0), zero ? 1 : 1e-9);
  const n = Math.max(values.length, slots, 1);
  const step = width / n;
  const offset = n - values.length; // empty slots on the left
  const base = document.createElementNS(ns, "line");
  base.setAttribute("x1", 0); base.setAttribute("x2", width); base.setAttribute("y1", height - 0.5); base.setAttribute("y2", height - 0.5);
  base.setAttribute("class", "base");
  svg.append(base);
  if (bars) {
    values.forEach((v, i) => {
      if (!v) return;
      const r = document.createElementNS(ns, "rect");
      const h = Math.max(1, (v / max) * (height - 2));
      r.setAttribute("x", ((i + offset) * step).toFixed(1)); r.setAttribute("width", Math.max(step - 1, 1).toFixed(1));
      r.setAttribute("y", (height - h).toFixed(1)); r.setAttribute("height", h.toFixed(1));
      svg.append(r);
    });
  } else {
    const pts = values.map((v, i) => (v === null ? null : `${((i + offset) * step + step / 2).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`));
    // Gaps (no request in a bucket) split the line.
    let run = [];
    const flush = () => { if (run.length) { const p = document.createElementNS(ns, "polyline"); p.setAttribute("points", run.join(" ")); svg.append(p); } run = []; };
    for (const p of pts) { if (p === null) flush(); else run.push(p); }
    flush();
    for (const p of pts) {
      if (p === null) continue;
      const [cx, cy] = p.split(",");
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", cx); c.setAttribute("cy", cy); c.setAttribute("r", 1.8);
      svg.append(c);
    }
  }
  const title = document.createElementNS(ns, "title");
  title.textContent = `max ${bars ? max : fmtMs(max)}`;
  svg.append(title);
  return svg;
}

async function refreshStats() {
  try {
    const s = await api("GET", "v1/stats");
    const rep = s.replicas;
    $("stages-status").textContent = rep.error ? rep.error : `application ${rep.app} · updated ${new Date().toLocaleTimeString()}`;
    const history = state.replicaHistory || (state.replicaHistory = {});
    $("replicas").replaceChildren(...rep.deployments.map((d) => {
      const h = history[d.deployment] || (history[d.deployment] = []);
      h.push(d.running);
      if (h.length > 150) h.shift(); // 5 minutes at one poll per 2 s
      const pending = Math.max(0, (d.target ?? d.running) - d.running);
      const a = d.autoscaling;
      return el("tr", { "data-deployment": d.deployment },
        el("td", {}, el("b", {}, d.deployment)),
        el("td", {}, el("span", { class: `status ${d.status}`, title: d.message }, d.status)),
        el("td", {}, el("span", { class: "replica-dots" }, Array.from({ length: Math.min(d.running, 16) }, () => el("i")),
          Array.from({ length: Math.min(pending, 16) }, () => el("i", { class: "pending" }))), el("span", { class: "running" }, d.running)),
        el("td", {}, d.target ?? "—"),
        el("td", {}, a ? `${a.min_replicas}–${a.max_replicas}, target ${a.target_ongoing_requests} ongoing` : "fixed"),
        el("td", { class: "muted" }, Object.entries(d.states).map(([k, v]) => `${k} ${v}`).join(", ")),
        el("td", {}, sparkline(h, { bars: true, width: 150, height: 22, zero: true, slots: 150 })));
    }));
    const st = s.stages;
    if (!st) { $("stage-stats").replaceChildren(el("tr", {}, el("td", { colspan: 9 }, "No stage window on this ingress."))); return; }
    $("window-note").textContent = `ingress replica's last ${Math.round(st.window_s / 60)} min`;
    $("stage-stats").replaceChildren(...STAGE_ORDER.map((name) => {
      const x = st.stages[name];
      return el("tr", { "data-stage": name },
        el("td", {}, el("b", {}, name)),
        el("td", { class: "num" }, x.rate_per_s.toFixed(2)),
        el("td", { class: "num" }, x.p50_ms === null ? "—" : x.p50_ms.toFixed(1)),
        el("td", { class: "num" }, x.p95_ms === null ? "—" : x.p95_ms.toFixed(1)),
        el("td", { class: "num" }, x.max_ms === null ? "—" : x.max_ms.toFixed(1)),
        el("td", { class: "num" }, x.count),
        el("td", { class: "num" }, x.degraded ? el("span", { class: "badge bad" }, x.degraded) : "0"),
        el("td", {}, sparkline(x.buckets.map((b) => b.p95_ms))),
        el("td", {}, sparkline(x.buckets.map((b) => b.count), { bars: true })));
    }));
  } catch (err) {
    $("stages-status").textContent = `could not load: ${err.message}`;
  }
}

function startStats() {
  stopStats();
  refreshStats();
  if ($("stages-live").checked) state.statsTimer = setInterval(refreshStats, 2000);
}
function stopStats() { if (state.statsTimer) clearInterval(state.statsTimer); state.statsTimer = null; }

// ---- start --------------------------------------------------------------------------------------------

function init() {
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => showView(b.dataset.view));
  for (const b of document.querySelectorAll("[data-goto]")) b.addEventListener("click", () => showView(b.dataset.goto));
  setupKey();
  $("ask-form").addEventListener("submit", ask);
  $("ask-question").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask-form").requestSubmit(); } });
  $("ask-collection").addEventListener("change", (e) => { state.collection = e.target.value; });
  $("collections-refresh").addEventListener("click", loadCollections);
  $("graph-reset").addEventListener("click", () => { state.graphLoaded = false; drawGraph(); });
  $("graph-fit").addEventListener("click", () => state.cy && state.cy.fit(undefined, 30));
  $("ingest-form").addEventListener("submit", ingest);
  $("ingest-files").addEventListener("change", renderFileList);
  $("ingest-collection").addEventListener("change", (e) => { e.target.dataset.touched = "1"; loadDocuments(); });
  $("docs-refresh").addEventListener("click", loadDocuments);
  $("stages-live").addEventListener("change", startStats);
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); $("ingest-files").files = e.dataTransfer.files; renderFileList(); });
  checkReady();
  setInterval(checkReady, 15000);
  loadCollections();
  const initial = location.hash.slice(1);
  showView(["ask", "graph", "timing", "ingest", "stages"].includes(initial) ? initial : "ask");
}

document.addEventListener("DOMContentLoaded", init);
