"""The explorer page: one self-contained HTML file (data, frames, script and style inline; no network).

`run_payload` joins a run's labels and summaries (`dplase.explorer.summary`) with its rendered frames
(`dplase.explorer.frames`); `group_runs` puts the runs that walk the same generator from the same start latents
(dataset, model, latent space, generator seed, run seed: one replicate) in one group, the page's first choice;
`page_html` writes the document.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from dplase.explorer.assets import KEYS, SCRIPT, STYLE
from dplase.explorer.frames import RunFrames
from dplase.explorer.summary import MODEL_COLUMNS


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities -> None, tuples -> lists, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def run_payload(info: Mapping[str, Any], summaries: Mapping[str, list[dict]], frames: RunFrames) -> dict[str, Any]:
    """Everything the page knows about one run (``info``: `summary.run_labels`; ``summaries``:
    `summary.walk_summaries`), frames as base64 PNG strips."""
    walks = {}
    for walk, directions in frames.walks.items():
        rows = summaries.get(walk, [])
        walks[walk] = [{**(rows[j] if j < len(rows) else {}),
                        "strips": [base64.b64encode(s).decode("ascii") for s in d.strips],
                        "matched": frames.matched[j], "group": d.group}
                       for j, d in enumerate(directions)]
    protocol = {k: info["protocol"].get(k) for k in ("seed", "n_samples", "n_steps", "max_eps", "walks", "metrics")}
    return _clean({
        **{k: info.get(k) for k in ("run_id", "method", "train_walk", "dataset", "model", "space", "model_seed",
                                    "seed", "k", "layer", "lambda", "zeta")},
        "label": info.get("variant") or info.get("method"), "sweep": info.get("sweep"),
        "params": info.get("params", {}), "protocol": protocol,
        "steps": frames.steps, "max_step": frames.max_step, "n_starts": frames.n_starts,
        "n_samples": frames.n_samples, "eval_seed": frames.eval_seed, "image": list(frames.image_shape),
        "native_size": frames.native_size, "fingerprints": frames.fingerprints,
        "recovery": info.get("recovery", frames.recovery), "walks": walks,
    })


def group_label(run: Mapping[str, Any]) -> str:
    """"planted · planted · generator seed 0 · run seed 0" (the latent space where it is not z)."""
    parts = [str(run["dataset"]), str(run["model"])]
    if run.get("space") and run["space"] != "z":
        parts.append(f"space {run['space']}")
    return " · ".join([*parts, f"generator seed {run.get('model_seed')}", f"run seed {run.get('seed')}"])


def group_runs(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The runs' replicates in first-seen order: one group per (dataset, model, space, generator seed, seed),
    each listing its run ids in the given order."""
    groups: dict[tuple, dict[str, Any]] = {}
    for run in runs:
        key = (*(run.get(c) for c in MODEL_COLUMNS), run.get("seed"))
        entry = groups.setdefault(key, {"label": group_label(run), "runs": [],
                                        **{c: run.get(c) for c in (*MODEL_COLUMNS, "seed")}})
        entry["runs"].append(run["run_id"])
    return list(groups.values())


def payload(runs: Sequence[dict[str, Any]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The page's data: runs by id, their groups, and what produced the page (``meta``)."""
    return {"meta": _clean(dict(meta)), "groups": group_runs(runs), "runs": {r["run_id"]: r for r in runs},
            "keys": [list(k) for k in KEYS]}


def page_html(data: Mapping[str, Any], title: str = "dplase walk explorer") -> str:
    """The self-contained document (a strict Content-Security-Policy: nothing is fetched, only inline script,
    style and data: images)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<header><h1>{html.escape(title)}</h1><p id="summary"></p></header>
<section id="controls" aria-label="controls"></section>
<main id="panels"></main>
<section id="help" aria-label="keyboard"></section>
<footer id="provenance"></footer>
<noscript><p>This page needs JavaScript to show the walks.</p></noscript>
<script id="dplase-explorer-data" type="application/json">{text}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""
