"""The explorer page's style and script, inlined into the page (`dplase.explorer.page.page_html`).

The script reads the page's JSON (``#dplase-explorer-data``) and draws, per panel (a run), one row per direction:
a canvas showing the frame at the row's step (drawn from the direction's PNG strip of the chosen start), a
slider over the step grid, the strip itself (click a frame to go there), the top factors and, on a planted
generator, the matched factor. Each canvas records what it shows in ``data-shown`` ("run|walk|direction|start|
step index") once drawn. Keys: see ``KEYS`` below (also shown on the page).
"""

from __future__ import annotations

STYLE = """
:root { --fg: #1d232b; --muted: #5d6b7a; --line: #d7dde4; --bg: #f6f8fa; --card: #fff; --accent: #2f6fdd; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  background: var(--bg); }
header { padding: 12px 20px 4px; } h1 { font-size: 20px; margin: 0 0 2px; }
#summary { color: var(--muted); margin: 0; }
#controls { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; padding: 8px 20px;
  border-bottom: 1px solid var(--line); position: sticky; top: 0; background: var(--bg); z-index: 2; }
#controls label { display: flex; gap: 6px; align-items: center; color: var(--muted); }
select, button { font: inherit; padding: 3px 6px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--card); color: var(--fg); }
button { cursor: pointer; } button:focus-visible, select:focus-visible, input:focus-visible {
  outline: 2px solid var(--accent); outline-offset: 1px; }
#panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 20px; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px; min-width: 0; }
.panel h2 { font-size: 16px; margin: 0; } .runid { font: 12px ui-monospace, monospace; color: var(--muted); }
.chips { display: flex; flex-wrap: wrap; gap: 4px; margin: 6px 0; }
.chip { font-size: 12px; padding: 1px 7px; border-radius: 10px; background: #eef2f7; color: var(--fg); }
.chip.good { background: #e3f4e8; } .note { color: var(--muted); font-size: 12px; }
.row { display: flex; gap: 12px; padding: 8px 4px; border-top: 1px solid var(--line); align-items: flex-start; }
.row.active { background: #f0f5ff; border-radius: 6px; }
.dir { font-weight: 600; width: 28px; padding-top: 4px; }
canvas.frame { image-rendering: pixelated; border: 1px solid var(--line); background: #000; flex: none; }
.ctl { flex: 1; min-width: 0; display: flex; flex-direction: column; gap: 3px; }
.step-slider { width: 100%; accent-color: var(--accent); }
.film { position: relative; height: 28px; cursor: pointer; align-self: flex-start; }
.film img { height: 28px; image-rendering: pixelated; display: block; opacity: 0.85; }
.film .mark { position: absolute; top: -2px; height: 32px; border: 2px solid var(--accent); border-radius: 3px;
  pointer-events: none; }
.readout { font-variant-numeric: tabular-nums; }
.factor { display: inline-block; position: relative; font-size: 12px; padding: 0 6px; margin: 1px 3px 1px 0;
  border-radius: 4px; background: #eef2f7; overflow: hidden; }
.factor i { position: absolute; left: 0; bottom: 0; height: 3px; background: var(--accent); }
.warn { color: #a5400d; font-size: 12px; }
details { margin-top: 4px; } pre { white-space: pre-wrap; font-size: 11px; margin: 4px 0; }
#help, footer { padding: 4px 20px 16px; color: var(--muted); font-size: 12px; } .scroll { overflow-x: auto; }
td.params { word-break: break-all; min-width: 240px; }
kbd { border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 4px; padding: 0 4px; background: #fff; }
table { border-collapse: collapse; font-size: 12px; } td, th { border: 1px solid var(--line); padding: 2px 6px;
  text-align: left; vertical-align: top; } td.params { font: 11px ui-monospace, monospace; max-width: 480px; }
"""

#: the page's keys (key label, what it does); the script below implements the same
KEYS = (
    ("← →", "step along the focused direction (on a slider: its own keys; Home / End: the ends)"),
    ("↑ ↓", "previous / next direction"), ("[ ]", "previous / next start sample"),
    ("0", "back to the start image (ε = 0)"), ("r", "reset every slider"), ("l", "link the two panels' sliders"),
    ("p", "play / pause"), ("w", "next walk"), ("s", "swap the panels"), ("g", "next generator"),
)

SCRIPT = r"""
(function () {
"use strict";
const DATA = JSON.parse(document.getElementById("dplase-explorer-data").textContent);
const RUNS = DATA.runs, GROUPS = DATA.groups;
const state = {group: 0, walk: "", start: 0, slots: ["", ""], link: true, zoom: 3, step: {}, active: [0, 0]};
const cache = new Map();
let rows = [], timer = null, tick = 0;

function el(tag, props, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) node.append(kid);
  return node;
}
const fmt = (x, d = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
const signed = (x) => (x > 0 ? "+" : x < 0 ? "−" : "") + Math.abs(x).toFixed(2);
const groupRuns = () => GROUPS[state.group].runs.map((id) => RUNS[id]);
const zero = (run) => Math.max(0, run.steps.indexOf(0));

function groupWalks() {
  const seen = [];
  for (const run of groupRuns()) for (const w of Object.keys(run.walks)) if (!seen.includes(w)) seen.push(w);
  return seen;
}
function defaultSlots() {
  const runs = groupRuns();
  const a = runs.find((r) => r.label === "dplase (norm)") || runs.find((r) => r.method === "dplase") || runs[0];
  const b = runs.find((r) => r !== a && r.method === "oracle") || runs.find((r) => r !== a && r.method !== a.method);
  return [a.run_id, b ? b.run_id : ""];
}
function chooseWalk(preferred) {
  const walks = groupWalks();
  state.walk = walks.includes(preferred) ? preferred : (walks.includes("norm") ? "norm" : walks[0]);
}
function getStep(slot, run, j) {
  const v = state.step[slot + ":" + j];
  return v === undefined ? zero(run) : Math.min(v, run.steps.length - 1);
}
function nearest(run, value) {
  let best = 0;
  run.steps.forEach((s, i) => { if (Math.abs(s - value) < Math.abs(run.steps[best] - value)) best = i; });
  return best;
}
function setStep(slot, j, index, linked = true) {
  const run = RUNS[state.slots[slot]];
  if (!run) return;
  index = Math.max(0, Math.min(run.steps.length - 1, index));
  state.step[slot + ":" + j] = index;
  const other = RUNS[state.slots[1 - slot]];
  if (linked && state.link && other && j < other.k) state.step[(1 - slot) + ":" + j] = nearest(other, run.steps[index]);
  rows.filter((r) => r.j === j).forEach(update);
}
function strip(run, walk, j, s) {
  const key = [run.run_id, walk, j, s].join("|");
  let img = cache.get(key);
  if (!img) {
    img = new Image();
    img.src = "data:image/png;base64," + run.walks[walk][j].strips[s];
    cache.set(key, img);
  }
  return img;
}
function startOf(run) { return Math.min(state.start, run.n_starts - 1); }

function update(row) {
  const run = row.run, i = getStep(row.slot, run, row.j), s = startOf(run), [h, w] = run.image;
  const img = strip(run, state.walk, row.j, s), n = run.steps.length;
  row.slider.value = String(i);
  row.slider.setAttribute("aria-valuetext", "epsilon " + signed(run.steps[i]));
  row.readout.textContent = "ε = " + signed(run.steps[i]) + "  ·  step " + (i + 1) + " of " + n +
    "  ·  T = " + fmt(run.max_step);
  row.film.src = img.src;
  row.mark.style.left = (100 * i / n) + "%"; row.mark.style.width = (100 / n) + "%";
  row.now.textContent = now(row.info, run, i);
  if (!(img.complete && img.naturalWidth)) { img.addEventListener("load", () => update(row), {once: true}); return; }
  const ctx = row.canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage(img, i * w, 0, w, h, 0, 0, w, h);
  row.canvas.dataset.shown = [run.run_id, state.walk, row.j, s, i].join("|");
}
function now(info, run, i) {
  if (run.steps[i] === 0) return "start image";
  const parts = (info.top || []).map((t, f) => t[0] + " " + fmt(((info.per_step || [])[f] || [])[i]));
  return parts.length ? "at this step (mean of " + run.protocol.n_samples + " starts): " + parts.join(" · ") : "";
}
function factorChips(list, title) {
  if (!list || !list.length) return null;
  const top = Math.max(1, ...list.map((t) => t[1]));
  return el("div", {}, el("span", {class: "note", text: title + " "}), list.map(([name, v]) =>
    el("span", {class: "factor", title: name + ": " + fmt(v, 3)}, name + " " + fmt(v),
      el("i", {style: "width:" + (100 * Math.min(1, v / top)) + "%"}))));
}

function rowFor(slot, run, j) {
  const info = run.walks[state.walk][j], [h, w] = run.image;
  const canvas = el("canvas", {class: "frame", width: w, height: h, style: `width:${w * state.zoom}px`});
  const slider = el("input", {type: "range", class: "step-slider", min: 0, max: run.steps.length - 1, step: 1,
    "aria-label": "direction " + j + " of " + run.label});
  const film = el("img", {alt: "all steps of direction " + j}), mark = el("span", {class: "mark"});
  const filmBox = el("div", {class: "film", title: "click a frame to show it"}, film, mark);
  const row = {slot, run, j, info, canvas, slider, film, mark, readout: el("div", {class: "readout"}),
    now: el("div", {class: "note"})};
  slider.addEventListener("input", () => setStep(slot, j, Number(slider.value)));
  slider.addEventListener("focus", () => activate(slot, j));
  filmBox.addEventListener("click", (e) => {
    const box = film.getBoundingClientRect();
    setStep(slot, j, Math.floor((e.clientX - box.left) / box.width * run.steps.length));
    slider.focus();
  });
  canvas.addEventListener("wheel", (e) => { e.preventDefault(); setStep(slot, j, getStep(slot, run, j) +
    (e.deltaY > 0 ? 1 : -1)); slider.focus(); }, {passive: false});
  canvas.addEventListener("click", () => slider.focus());
  const match = info.matched ? el("div", {class: "note"}, "planted factor matched: ",
    el("b", {text: info.matched[0]}), " (|cos| " + fmt(info.matched[1], 3) + ")") : null;
  const group = info.group ? el("div", {class: "note", text: "masked edit in channel group " + info.group[0] +
    " (" + fmt(100 * info.group[1], 0) + "% of the direction's G1 change)"}) : null;
  const other = RUNS[state.slots[1 - slot]];
  const differ = other && other.walks[state.walk] && j < other.k && other.n_starts > startOf(run) &&
    other.fingerprints[j][startOf(other)] !== run.fingerprints[j][startOf(run)];
  row.node = el("div", {class: "row", "data-slot": slot, "data-direction": j, "data-run": run.run_id},
    el("div", {class: "dir", text: "d" + j}), canvas,
    el("div", {class: "ctl"}, slider, filmBox, row.readout, row.now,
      factorChips(info.top, "top factors" + (info.top_share === null || info.top_share === undefined ? ":" :
        " (top share " + fmt(info.top_share) + "):")),
      factorChips(info.exact, "exact:"), match, group,
      differ ? el("div", {class: "warn", text: "this row starts from a different latent than the other panel"})
        : null));
  return row;
}

function panel(slot) {
  const run = RUNS[state.slots[slot]];
  if (!run) return null;
  const p = run.params, chips = [["trained walk", run.train_walk], ["k", run.k], ["λ", run.lambda],
    ["ζ", run.zeta], ["layer", run.layer], ["sweep", run.sweep],
    ["frames", run.native_size > run.image[1] ? run.image[1] + " px of " + run.native_size : null]]
    .filter((c) => c[1] !== null && c[1] !== undefined);
  const head = el("div", {}, el("h2", {text: run.label}), el("div", {class: "runid", text: run.run_id}),
    el("div", {class: "chips"}, chips.map(([k, v]) => el("span", {class: "chip", text: k + " " + v})),
      run.recovery === null || run.recovery === undefined ? null :
        el("span", {class: run.recovery >= 0.9 ? "chip good" : "chip", text: "recovery " + fmt(run.recovery, 3)})),
    el("details", {}, el("summary", {text: "parameters and evaluation protocol"}),
      el("pre", {text: JSON.stringify({params: p, evaluation: run.protocol}, null, 1)})));
  const box = el("section", {class: "panel", "data-slot": slot, "data-run": run.run_id}, head);
  if (!run.walks[state.walk]) {
    box.append(el("p", {class: "warn", text: "walk '" + state.walk + "' was not evaluated for this run"}));
    return box;
  }
  for (let j = 0; j < run.k; j++) { const row = rowFor(slot, run, j); rows.push(row); box.append(row.node); }
  return box;
}

function select(id, label, options, value, onchange) {
  const node = el("select", {id, onchange: (e) => onchange(e.target.value)},
    options.map(([v, text]) => el("option", {value: v, text})));
  node.value = value;
  return el("label", {}, label, node);
}
function controls() {
  const runs = groupRuns(), choices = runs.map((r) => [r.run_id, r.label + " · " + r.run_id]);
  const nStarts = Math.max(...runs.map((r) => r.n_starts));
  const box = document.getElementById("controls");
  box.replaceChildren(
    select("group", "generator", GROUPS.map((g, i) => [String(i), g.label]), String(state.group),
      (v) => setGroup(Number(v))),
    select("walk", "walk", groupWalks().map((w) => [w, w]), state.walk, (v) => { state.walk = v; render(); }),
    el("label", {}, "start", el("button", {id: "prev-start", onclick: () => setStart(state.start - 1),
      title: "previous start sample ([)", text: "◀"}), el("span", {id: "start", text: (state.start + 1) + " / " +
      nStarts}), el("button", {id: "next-start", onclick: () => setStart(state.start + 1),
      title: "next start sample (])", text: "▶"})),
    select("slot0", "left", choices, state.slots[0], (v) => { state.slots[0] = v; render(); }),
    select("slot1", "right", [["", "— none —"], ...choices], state.slots[1], (v) => { state.slots[1] = v; render(); }),
    el("label", {}, el("input", {type: "checkbox", id: "link", ...(state.link ? {checked: ""} : {}),
      onchange: (e) => { state.link = e.target.checked; }}), "link sliders"),
    el("button", {id: "play", onclick: play, text: timer ? "❚❚ pause" : "▶ play"}),
    el("button", {id: "reset", onclick: reset, text: "reset"}),
    select("zoom", "zoom", [1, 2, 3, 4, 5, 6, 8].map((z) => [String(z), z + "×"]), String(state.zoom),
      (v) => { state.zoom = Number(v); render(); }));
}
function render() {
  rows = [];
  controls();
  document.getElementById("panels").replaceChildren(...[panel(0), panel(1)].filter(Boolean));
  rows.forEach(update);
  const act = rows.find((r) => r.slot === state.active[0] && r.j === state.active[1]) || rows[0];
  if (act) act.node.classList.add("active");
  try { history.replaceState(null, "", "#" + new URLSearchParams({g: state.group, w: state.walk, s: state.start,
    a: state.slots[0], b: state.slots[1]})); } catch (err) { /* an opaque origin (a report's frame) */ }
}
function setGroup(g) {
  state.group = (g + GROUPS.length) % GROUPS.length; state.step = {}; state.start = 0;
  state.slots = defaultSlots(); chooseWalk(state.walk); render();
}
function setStart(s) {
  const most = Math.max(...groupRuns().map((r) => r.n_starts));
  state.start = (s + most) % most;
  document.getElementById("start").textContent = (state.start + 1) + " / " + most;
  render();
}
function reset() { state.step = {}; rows.forEach(update); }
function activate(slot, j) {
  state.active = [slot, j];
  rows.forEach((r) => r.node.classList.toggle("active", r.slot === slot && r.j === j));
}
function play() {
  if (timer) { clearInterval(timer); timer = null; } else {
    timer = setInterval(() => {
      tick += 1;
      for (const r of rows) {
        const n = r.run.steps.length, t = tick % (2 * n - 2);
        state.step[r.slot + ":" + r.j] = t < n ? t : 2 * n - 2 - t;
        update(r);
      }
    }, 350);
  }
  const button = document.getElementById("play");
  if (button) button.textContent = timer ? "❚❚ pause" : "▶ play";
}
function activeRow() { return rows.find((r) => r.slot === state.active[0] && r.j === state.active[1]) || rows[0]; }
function focusRow(delta) {
  if (!rows.length) return;
  const i = Math.max(0, Math.min(rows.length - 1, rows.indexOf(activeRow()) + delta));
  rows[i].slider.focus(); activate(rows[i].slot, rows[i].j);
}
document.addEventListener("keydown", (e) => {
  const target = e.target, onSlider = target.classList && target.classList.contains("step-slider");
  if (target.tagName === "SELECT" || target.tagName === "TEXTAREA" || e.ctrlKey || e.metaKey || e.altKey) return;
  const row = activeRow();
  const keys = {
    ArrowUp: () => focusRow(-1), ArrowDown: () => focusRow(1),
    ArrowLeft: () => row && setStep(row.slot, row.j, getStep(row.slot, row.run, row.j) - 1),
    ArrowRight: () => row && setStep(row.slot, row.j, getStep(row.slot, row.run, row.j) + 1),
    "[": () => setStart(state.start - 1), "]": () => setStart(state.start + 1),
    "0": () => row && setStep(row.slot, row.j, zero(row.run)), r: reset, p: play,
    l: () => { state.link = !state.link; document.getElementById("link").checked = state.link; },
    w: () => { const w = groupWalks(); state.walk = w[(w.indexOf(state.walk) + 1) % w.length]; render(); },
    s: () => { if (state.slots[1]) { state.slots.reverse(); state.step = {}; render(); } },
    g: () => setGroup(state.group + 1),
  };
  if (onSlider && (e.key === "ArrowLeft" || e.key === "ArrowRight")) return;  // the slider's own keys
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
});

function provenance() {
  const meta = DATA.meta, head = ["run id", "variant", "method", "trained walk", "dataset", "model", "generator seed",
    "seed", "k", "eval seed", "starts shown / evaluated", "step grid", "parameters"];
  const body = Object.values(RUNS).map((r) => el("tr", {}, [r.run_id, r.label, r.method, r.train_walk, r.dataset,
    r.model + (r.space && r.space !== "z" ? " (" + r.space + ")" : ""), r.model_seed, r.seed, r.k, r.eval_seed,
    r.n_starts + " / " + r.n_samples, r.steps.map(signed).join(" ")].map((v) => el("td", {text: String(v)})),
    el("td", {class: "params", text: JSON.stringify(r.params)})));
  document.getElementById("provenance").replaceChildren(
    el("h3", {text: "What produced this page"}),
    el("p", {text: "Frames rendered by dplase " + meta.version + " on " + meta.created + " from " + meta.metrics +
      " (" + meta.n_frames + " frames, " + (meta.frame_bytes / 1e6).toFixed(1) + " MB of PNG). Each direction j " +
      "walks from the first starts of its own block of the evaluation's seeded start latents (eval seed), over " +
      "the evaluation's step grid; the factors are the evaluation's attribute-change rows (mean normalised change " +
      "over all its starts and steps; 1 = as much as swapping for a random real image). Options: " +
      JSON.stringify(meta.options) + "."}),
    el("div", {class: "scroll"}, el("table", {}, el("tr", {}, head.map((h) => el("th", {text: h}))), body)));
}
function help() {
  document.getElementById("help").replaceChildren(el("span", {text: "Keys: "}),
    ...DATA.keys.map(([k, what]) => el("span", {}, el("kbd", {text: k}), " " + what + " · ")),
    el("span", {text: "Mouse: drag a slider, click a frame of a strip, or scroll over an image."}));
}
function init() {
  const runs = Object.values(RUNS), meta = DATA.meta;
  document.getElementById("summary").textContent = runs.length + " runs on " + GROUPS.length +
    " generator replicate(s) · " + meta.n_starts + " start sample(s) per direction, from the evaluation's own " +
    "seeded start latents · dplase " + meta.version + " · " + meta.created;
  const hash = new URLSearchParams(location.hash.slice(1));
  state.group = Math.min(Number(hash.get("g")) || 0, GROUPS.length - 1);
  state.slots = defaultSlots();
  const ids = GROUPS[state.group].runs;
  if (ids.includes(hash.get("a"))) state.slots[0] = hash.get("a");
  if (hash.has("b") && (hash.get("b") === "" || ids.includes(hash.get("b")))) state.slots[1] = hash.get("b");
  chooseWalk(hash.get("w"));
  state.start = Number(hash.get("s")) || 0;
  state.zoom = Math.max(1, Math.round(160 / Math.max(...runs.map((r) => r.image[1]))));
  help(); provenance(); render();
}
if (GROUPS.length) init();
else document.getElementById("panels").textContent = "No runs to show: the study has none, or none passes the " +
  "config's explorer.seeds / explorer.model_seeds.";
})();
"""
