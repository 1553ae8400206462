// QuSeC's dashboard page: one snapshot, then deltas, over server-sent events; SVG drawn by hand.
// No library and no network but the page's own origin (docs/dashboard.md says what it shows).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PAIR_COLOURS = ["#7b3fe4", "#0a84c6", "#d6336c", "#e8590c", "#2f9e44", "#1c7ed6", "#ae3ec9", "#f08c00"];
let S = fresh();
let pending = false;

function fresh() {
  return {nodes: {}, links: {}, classical: [], pairs: [], refusals: [], events: [], series: {},
          kpis: {}, thresholds: {empty_bits: 0, low_bits: 0}, window_s: 300, app: false, layout: ""};
}

function el(tag, attrs, parent, ns) {
  const e = ns ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function rate(bps) {
  if (bps === null || bps === undefined) return "–";
  if (bps === 0) return "0";
  if (bps >= 1e6) return (bps / 1e6).toPrecision(3) + " Mb/s";
  if (bps >= 1e3) return (bps / 1e3).toPrecision(3) + " kb/s";
  return (+bps).toPrecision(3) + " b/s";
}

function bits(n) {
  if (n >= 8e6) return (n / 8e6).toPrecision(3) + " MB";
  if (n >= 8e3) return (n / 8e3).toPrecision(3) + " kB";
  return n + " b";
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString([], {hour12: false});
}

// -- the stream -------------------------------------------------------------------------------
function apply(msg) {
  for (const k of ["app", "layout", "classical", "pairs", "refusals", "kpis", "thresholds", "window_s"]) {
    if (k in msg) S[k] = msg[k];
  }
  for (const k of ["nodes", "links"]) {
    Object.assign(S[k], msg[k] || {});
    for (const id of msg[k + "_removed"] || []) delete S[k][id];
  }
  const seen = new Set(S.events.map(e => e.seq));
  for (const e of msg.events || []) if (!seen.has(e.seq)) S.events.push(e);
  S.events = S.events.slice(-200);
  for (const [id, pts] of Object.entries(msg.series || {})) {
    const s = S.series[id] || (S.series[id] = []);
    for (const p of pts) if (!s.length || p[0] > s[s.length - 1][0]) s.push(p);
    const start = (s.length ? s[s.length - 1][0] : 0) - S.window_s;
    while (s.length && s[0][0] < start) s.shift();
  }
  if (!pending) { pending = true; requestAnimationFrame(render); }
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("stream");
  es.addEventListener("snapshot", ev => {
    S = fresh();
    document.getElementById("layer-qkd").replaceChildren();
    document.getElementById("layer-nodes").replaceChildren();
    document.getElementById("layer-labels").replaceChildren();
    apply(JSON.parse(ev.data));
    conn.textContent = "live"; conn.className = "conn up";
  });
  es.addEventListener("delta", ev => apply(JSON.parse(ev.data)));
  es.onerror = () => { conn.textContent = "reconnecting"; conn.className = "conn down"; };
}

// -- drawing ----------------------------------------------------------------------------------
function render() {
  pending = false;
  const app = document.getElementById("app");
  app.textContent = S.app ? "app up" : "app away"; app.className = "conn " + (S.app ? "up" : "down");
  document.getElementById("th-low").textContent = S.thresholds.low_bits;
  document.getElementById("th-empty").textContent = S.thresholds.empty_bits;
  document.getElementById("window").textContent = Math.round(S.window_s / 60) + " min";
  fitView(); drawClassical(); drawLinks(); drawPaths(); drawNodes();
  drawKpis(); drawPairs(); drawRefusals(); drawEvents(); drawLinkTable();
  document.body.dataset.ready = "1";
}

function fitView() {
  // the picture fills the panel: the nodes' bounding box and a margin for labels
  const ns = Object.values(S.nodes);
  if (!ns.length) return;
  const xs = ns.map(n => n.x), ys = ns.map(n => n.y), m = 60;
  const x0 = Math.min(...xs) - m, y0 = Math.min(...ys) - m;
  const w = Math.max(...xs) - x0 + m, h = Math.max(...ys) - y0 + m;
  document.getElementById("topology").setAttribute("viewBox", `${x0} ${y0} ${Math.max(w, 200)} ${Math.max(h, 200)}`);
}

function pos(id) { const n = S.nodes[id]; return n ? [n.x, n.y] : null; }

function sync(layer, items, key, make, update) {
  // one element per item id: make the missing ones, update all, drop the gone ones
  const g = document.getElementById(layer);
  const have = new Map([...g.children].map(c => [c.dataset.id, c]));
  for (const item of items) {
    const id = key(item);
    let e = have.get(id);
    if (!e) { e = make(item, g); e.dataset.id = id; }
    have.delete(id);
    update(e, item);
  }
  for (const e of have.values()) e.remove();
}

function drawClassical() {
  sync("layer-classical", S.classical.filter(c => pos(c.a) && pos(c.b)), c => c.a + "|" + c.b,
    (c, g) => el("line", {class: "classical"}, g, true),
    (e, c) => { const [a, b] = [pos(c.a), pos(c.b)];
      e.setAttribute("x1", a[0] + 6); e.setAttribute("y1", a[1] + 6);
      e.setAttribute("x2", b[0] + 6); e.setAttribute("y2", b[1] + 6); });
}

function drawLinks() {
  const links = Object.values(S.links).filter(l => pos(l.a) && pos(l.b));
  const labels = links.length <= 80;
  sync("layer-qkd", links, l => l.id,
    (l, g) => { const e = el("line", {class: "qkd"}, g, true); el("title", {}, e, true); return e; },
    (e, l) => { const [a, b] = [pos(l.a), pos(l.b)];
      e.setAttribute("x1", a[0]); e.setAttribute("y1", a[1]);
      e.setAttribute("x2", b[0]); e.setAttribute("y2", b[1]);
      e.setAttribute("class", "qkd level-" + l.level + (l.alarm ? " alarm" : ""));
      e.dataset.level = l.level;
      e.dataset.alarm = l.alarm || "";
      e.firstChild.textContent = `${l.id}: ${l.status}${l.alarm ? " ALARM " + l.alarm : ""}, stored ${bits(l.stored_bits)}, ` +
        `rate ${rate(l.skr_bps)}, consumption ${rate(l.consumption_bps)}`; });
  sync("layer-labels", labels ? links : [], l => l.id,
    (l, g) => el("text", {class: "link-label"}, g, true),
    (e, l) => { const [a, b] = [pos(l.a), pos(l.b)];
      e.setAttribute("x", (a[0] + b[0]) / 2); e.setAttribute("y", (a[1] + b[1]) / 2 - 6);
      e.textContent = l.alarm ? "⚠ " + l.alarm + (l.qber ? " QBER " + (+l.qber).toFixed(3) : "")
        : rate(l.skr_bps) + (l.consumption_bps ? " / " + rate(l.consumption_bps) : "");
      e.setAttribute("class", "link-label" + (l.alarm ? " alarm" : "")); });
}

function pairKey(p) { return (p.src_sae || p.src) + "→" + (p.dst_sae || p.dst); }

function drawPaths() {
  const items = [];
  S.pairs.forEach((p, i) => p.paths.forEach((path, j) => items.push({pair: p, path, colour: PAIR_COLOURS[i % PAIR_COLOURS.length], j, n: p.paths.length})));
  sync("layer-paths", items.filter(x => x.path.nodes.every(pos)), x => x.path.id,
    (x, g) => { const e = el("polyline", {class: "path"}, g, true); el("title", {}, e, true); return e; },
    (e, x) => {
      const off = (x.j - (x.n - 1) / 2) * 16;   // multipath shares side by side
      e.setAttribute("points", x.path.nodes.map(pos).map(p => (p[0] + off) + "," + (p[1] + off)).join(" "));
      e.setAttribute("stroke", x.colour);
      e.dataset.pair = pairKey(x.pair);
      e.dataset.nodes = x.path.nodes.join("-");
      e.firstChild.textContent = `${pairKey(x.pair)} share ${x.path.share}: ${x.path.nodes.join("-")} (rule ${x.pair.rule}, ${x.pair.security_level || "qkd"})`;
    });
}

function drawNodes() {
  sync("layer-nodes", Object.values(S.nodes), n => n.id,
    (n, g) => { const e = el("g", {class: "node"}, g, true);
      el("circle", {r: 16}, e, true); el("text", {class: "node-label", y: -24}, e, true);
      el("title", {}, e, true); return e; },
    (e, n) => {
      e.setAttribute("transform", `translate(${n.x},${n.y})`);
      e.setAttribute("class", "node " + (n.online ? "up" : "down"));
      e.dataset.online = n.online ? "1" : "0";
      e.children[0].setAttribute("stroke-width", 1 + (n.trust || 3));
      e.children[1].textContent = n.id;
      e.children[2].textContent = `${n.id}: trust ${n.trust}, agent ${n.online ? "up" : "down"}`;
    });
}

function drawKpis() {
  const k = S.kpis, dl = document.getElementById("kpis");
  const pct = v => v === null || v === undefined ? "–" : (100 * v).toFixed(1) + " %";
  const ms = v => v === null || v === undefined ? "–" : v.toFixed(1) + " ms";
  const rows = [["key delay p50", ms(k.delay_p50_ms)], ["p99", ms(k.delay_p99_ms)],
    ["requests", k.requests ?? "–"], ["failures", k.failures ?? "–"], ["availability", pct(k.availability)],
    ["agents", `${k.nodes_online ?? 0}/${k.nodes ?? 0}`], ["QKD links up", `${k.links_up ?? 0}/${k.links ?? 0}`],
    ["paths", k.paths ?? 0], ["window", Math.round(k.window_s || 0) + " s"]];
  dl.replaceChildren();
  for (const [t, v] of rows) { el("dt", {}, dl).textContent = t; el("dd", {}, dl).textContent = v; }
}

function drawPairs() {
  const box = document.getElementById("pairs");
  box.replaceChildren();
  document.getElementById("paths-count").textContent = S.pairs.length ? `(${S.pairs.length} SAE pairs)` : "";
  if (!S.pairs.length) el("p", {class: "none"}, box).textContent = "no active relay path";
  S.pairs.forEach((p, i) => {
    const d = el("div", {class: "pair"}, box);
    d.dataset.pair = pairKey(p);
    const sw = el("span", {class: "sw"}, d); sw.style.background = PAIR_COLOURS[i % PAIR_COLOURS.length];
    el("b", {}, d).textContent = pairKey(p);
    el("span", {class: "meta"}, d).textContent = ` rule ${p.rule || "?"}, ${p.security_level || "qkd"}`;
    for (const path of p.paths) el("div", {class: "route"}, d).textContent = `${path.share}: ${path.nodes.join(" – ")}`;
  });
}

function drawRefusals() {
  const box = document.getElementById("refusals");
  box.replaceChildren();
  if (!S.refusals.length) el("p", {class: "none"}, box).textContent = "none";
  for (const r of S.refusals.slice().reverse()) {
    const d = el("div", {class: "refusal"}, box);
    el("time", {}, d).textContent = clock(r.time) + " ";
    el("span", {}, d).textContent = r.text;
  }
}

function drawEvents() {
  const ol = document.getElementById("events");
  ol.replaceChildren();
  for (const e of S.events.slice(-100).reverse()) {
    const li = el("li", {class: "ev " + e.kind + (e.refusal ? " refusal" : "") + (e.alarm ? " alarm" : "")}, ol);
    li.dataset.kind = e.kind;
    el("time", {}, li).textContent = clock(e.time) + " ";
    el("span", {}, li).textContent = e.text;
  }
}

function sparkline(cell, series) {
  const w = 120, h = 24, svg = cell.querySelector("svg") || el("svg", {class: "spark", viewBox: `0 0 ${w} ${h}`, width: w, height: h}, cell, true);
  svg.replaceChildren();
  if (!series || !series.length) return;
  // the history there is, up to the window (a young network's few points use the whole width)
  const t1 = series[series.length - 1][0], t0 = Math.max(series[0][0], t1 - S.window_s);
  const span = Math.max(t1 - t0, 1);
  const max = Math.max(S.thresholds.low_bits * 2, ...series.map(p => p[1]));
  const y = v => h - 1 - (h - 2) * v / max;
  el("line", {class: "spark-low", x1: 0, x2: w, y1: y(S.thresholds.low_bits), y2: y(S.thresholds.low_bits)}, svg, true);
  el("polyline", {points: series.map(p => `${(w * (p[0] - t0) / span).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ")}, svg, true);
}

function drawLinkTable() {
  const body = document.querySelector("#links tbody");
  const have = new Map([...body.children].map(r => [r.dataset.id, r]));
  for (const l of Object.values(S.links).sort((a, b) => a.id.localeCompare(b.id))) {
    let r = have.get(l.id);
    if (!r) { r = el("tr", {}, body); r.dataset.id = l.id; for (let i = 0; i < 7; i++) el("td", {}, r); }
    have.delete(l.id);
    const c = r.children;
    r.className = "level-" + l.level;
    c[0].textContent = l.id;
    c[1].textContent = l.status + (l.alarm ? " ⚠ " + l.alarm + (l.qber ? " QBER " + (+l.qber).toFixed(3) : "") : "") + (l.disputed ? " (disputed)" : "");
    c[2].textContent = bits(l.stored_bits);
    sparkline(c[3], S.series[l.id]);
    c[4].textContent = rate(l.skr_bps);
    c[5].textContent = rate(l.consumption_bps);
    c[6].textContent = l.paths || "";
  }
  for (const r of have.values()) r.remove();
}

document.addEventListener("DOMContentLoaded", connect);
