"""The walk explorer: one static HTML page per study (``results/explorer/index.html``) to look at what was found.

Pick a generator replicate, a walk and a start sample; every direction of a run gets a slider over the
evaluation's step grid, two runs are shown side by side on the same start latents, and each direction lists its
top factors (the evaluation's attribute-change rows) and, on a planted generator, its matched planted factor.
The page is one self-contained file (frames as inline PNG, no server, no network): copy it anywhere and open it.

- `dplase.explorer.frames`: frames rendered once, from the evaluation's own seeded start latents and step grid;
- `dplase.explorer.summary`: labels, protocol and factors from the collected results table;
- `dplase.explorer.page` and `dplase.explorer.assets`: the document, its script and style.

`write_explorer` is what the workflow's ``explore_walks`` stage (`dplase.jobs.explore_job`) and ``dplase
explore`` call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["write_explorer"]

log = logging.getLogger(__name__)


def _render(run: Mapping[str, Any], info: dict[str, Any], n_starts: int, image_size: int,
            device: str) -> dict[str, Any]:
    """One run's part of the page: its frames and summaries."""
    from dplase.explorer.frames import render_frames
    from dplase.explorer.page import run_payload
    from dplase.explorer.summary import masked_groups, run_scalar, walk_summaries

    rows = info.pop("rows")
    frames = render_frames(run["generator"], run["directions"], info["protocol"], n_starts, image_size,
                           masked_groups=masked_groups(rows), device=device)
    recovery = run_scalar(rows, "recovery")
    if recovery is not None:
        info["recovery"] = recovery
    info["sweep"] = run.get("sweep")
    log.info("explorer: run %s, %d frames, %.0f kB", info["run_id"], frames.n_frames, frames.n_bytes / 1e3)
    return {**run_payload(info, walk_summaries(rows, frames.steps), frames), "_frames": frames.n_frames,
            "_bytes": frames.n_bytes}


def write_explorer(metrics: str | os.PathLike, runs: Sequence[Mapping[str, Any]], out: str | os.PathLike,
                   n_starts: int = 4, image_size: int = 64, device: str = "cpu",
                   title: str = "dplase walk explorer") -> Path:
    """Write the explorer page of ``runs`` (each ``{"run_id", "generator", "directions"}``, optionally
    ``"sweep"``) to ``out``: labels, protocol and factors from the results table ``metrics``, ``n_starts``
    start samples per direction (at most the evaluation's), frames no larger than ``image_size`` pixels."""
    from dplase import __version__
    from dplase.artifacts import atomic_write_bytes
    from dplase.explorer.page import page_html, payload
    from dplase.explorer.summary import read_runs
    from dplase.results import read_results

    if n_starts < 1 or image_size < 1:
        raise ValueError(f"need n_starts >= 1 and image_size >= 1, got {n_starts} and {image_size}")
    infos = read_runs(read_results(metrics), [r["run_id"] for r in runs])
    parts = [_render(run, infos[run["run_id"]], n_starts, image_size, device) for run in runs]
    meta = {"version": __version__, "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "metrics": str(metrics), "n_starts": int(n_starts), "options": {"n_starts": int(n_starts),
                                                                             "image_size": int(image_size)},
            "n_frames": sum(p.pop("_frames") for p in parts), "frame_bytes": sum(p.pop("_bytes") for p in parts)}
    document = page_html(payload(parts, meta), title).encode("utf-8")
    path = atomic_write_bytes(out, document)
    log.info("explorer page %s: %d runs, %d frames, %.2f MB", path, len(parts), meta["n_frames"], len(document) / 1e6)
    return path
