"""Importers: checkpoints in foreign layouts converted once into a dplase generator artifact.

A format is one file here with a ``convert(path, options) -> Converted`` function, plus one line in `IMPORTERS`
(``family``: the dplase family whose network receives the weights). `import_checkpoint` loads the foreign file
with ``torch.load(weights_only=True)`` (never unpickling code), converts it, builds the family's network from the
converted ``arch``, loads the converted state strictly (every tensor used, none missing) and writes the result
with `dplase.generators.registry.save_generator`, so that everything downstream (discovery, evaluation, the
workflow) reads an ordinary generator file. A wrong or partial checkpoint is an `ImportFormatError` that names
the file and the first missing, unexpected or mis-shaped keys.

This module imports nothing heavy at module level (the config layer reads `IMPORTERS`' names).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dplase.artifacts import ArtifactError
from dplase.registry import Registry

#: checkpoint format -> its converter; ``family``: the dplase family the weights go into (None: refused)
IMPORTERS = Registry("checkpoint format", {
    "rosinality": ("dplase.generators.importers.rosinality:convert", {"family": "stylegan2"}),
    "genforce": ("dplase.generators.importers.genforce:convert", {"family": "stylegan2"}),
    "biggan": ("dplase.generators.importers.biggan:convert", {"family": "biggan"}),
    "nvlabs": ("dplase.generators.importers.nvlabs:convert", {"family": None}),
})
#: how many offending keys an error message lists
SHOWN_KEYS = 8


class ImportFormatError(ArtifactError):
    """A foreign checkpoint that cannot be imported (wrong format, partial, corrupted, or carrying code)."""


@dataclass
class Converted:
    """A foreign checkpoint in dplase terms: the family, its network's ``arch`` keyword arguments, the state
    dict in that network's own key names, the latent prior (``make_prior`` arguments) and extra metadata
    (source format, truncation average, class index, ...)."""

    family: str
    arch: dict[str, Any]
    state: dict[str, Any]
    prior: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def key_report(have: Mapping[str, Any], want: Mapping[str, tuple[int, ...]]) -> str:
    """Empty when ``have`` (name -> tensor) has exactly the keys and shapes of ``want`` (name -> shape), else a
    one-line account of the first missing, unexpected and mis-shaped keys."""
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shapes = [f"{k} {tuple(have[k].shape)} (expected {tuple(want[k])})" for k in want
              if k in have and tuple(getattr(have[k], "shape", ())) != tuple(want[k])]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:SHOWN_KEYS])}{more}")
    return "; ".join(parts)


def check_keys(path: str | os.PathLike, what: str, have: Mapping[str, Any],
               want: Mapping[str, tuple[int, ...]]) -> None:
    """Raise `ImportFormatError` naming ``path`` unless ``have`` matches ``want`` exactly (see `key_report`)."""
    report = key_report(have, want)
    if report:
        raise ImportFormatError(f"{path}: {what} does not have the expected layout: {report}")


def load_tensors(path: str | os.PathLike, allow: tuple[type, ...] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU (``allow``: extra classes the file may name, e.g.
    argparse.Namespace), with one clear error for a missing, truncated, non-torch or code-carrying file."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused a global: the file would run code to load
        raise ImportFormatError(f"{path}: refused to unpickle: the file names Python objects beyond tensors and "
                                f"plain containers, so loading it could run code ({_refusal(err)})") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ImportFormatError(f"{path}: not a readable torch checkpoint (truncated or not one): "
                                f"{type(err).__name__}: {reason}") from err


def _refusal(err: Exception) -> str:
    """The weights-only unpickler's own reason (e.g. "Unsupported global: GLOBAL os.system ..."), without torch's
    advice to retry with weights_only=False, which is what dplase never does."""
    text = " ".join(str(err).replace("\x1b[1m", "").replace("\x1b[0m", "").split())
    head, found, tail = text.partition("WeightsUnpickler error:")
    reason = tail if found else head
    for stop in (" Please use", " Check the documentation"):
        reason = reason.split(stop)[0]
    return reason.strip()[:300]


def detect_format(path: str | os.PathLike) -> str:
    """The format of a foreign checkpoint from its name and top-level keys (a folder with config.json: biggan;
    .pkl: nvlabs; a dict with ``g_ema``: rosinality; with ``generator_smooth`` or ``generator``: genforce)."""
    path = Path(path)
    if path.is_dir() or path.name in ("pytorch_model.bin", "config.json"):
        return "biggan"
    if path.suffix == ".pkl":
        return "nvlabs"
    import argparse

    top = load_tensors(path, allow=(argparse.Namespace,))
    keys = set(top) if isinstance(top, dict) else set()
    if "g_ema" in keys:
        return "rosinality"
    nested = top.get("models") if isinstance(top, dict) else None  # a genforce runner's training checkpoint
    if keys & {"generator_smooth", "generator"} or (isinstance(nested, dict)
                                                    and set(nested) & {"generator_smooth", "generator"}):
        return "genforce"
    shown = ", ".join(sorted(map(str, keys))[:SHOWN_KEYS]) or "(not a dict)"
    raise ImportFormatError(f"{path}: cannot tell the checkpoint format from its top-level keys ({shown}); give "
                            f"format: one of {', '.join(IMPORTERS)}")


def import_checkpoint(path: str | os.PathLike, out: str | os.PathLike, format: str | None = None,
                      options: Mapping[str, Any] | None = None, name: str | None = None,
                      dataset: str | None = None) -> Path:
    """Convert the foreign checkpoint ``path`` (``format``: a name of `IMPORTERS`, None: `detect_format`) into a
    dplase generator artifact at ``out`` (``options``: the converter's, e.g. a class index or truncation)."""
    from dplase.artifacts import sha256_file
    from dplase.generators.registry import FAMILIES, save_generator

    fmt = format or detect_format(path)
    if fmt not in IMPORTERS:
        raise ImportFormatError(f"{path}: {IMPORTERS.unknown_message(fmt)}")
    converted: Converted = IMPORTERS.load(fmt)(Path(path), dict(options or {}))
    net = FAMILIES[converted.family].load().network(**converted.arch)
    check_keys(path, f"the converted {fmt} state", converted.state,
               {k: tuple(v.shape) for k, v in net.state_dict().items()})
    net.load_state_dict(converted.state, strict=True)
    # a converter may name the digest and the model itself (a folder checkpoint: its weights file, its folder)
    digest = converted.meta.get("source_sha256") or sha256_file(path)
    meta = {**converted.meta, "source_format": fmt, "source_file": str(path), "source_sha256": digest,
            "name": name or converted.meta.get("name") or Path(path).stem, "dataset": dataset, "seed": 0,
            "steps": 0}
    return save_generator(out, net, converted.family, converted.arch, converted.prior, meta)
