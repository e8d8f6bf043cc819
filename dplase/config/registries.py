"""Where each kind's registry lives: the config layer reads names from these, never from a copy.

Each target is an import-light module (the registry modules import nothing heavy at module level), so
validating a config at Snakemake parse time does not load torch models, sklearn or matplotlib.
"""

from __future__ import annotations

import importlib

from dplase.registry import Registry

#: registry kind (as the schema's ``x-dplase-registry`` names it) -> "module:attribute" of the registry
REGISTRIES = {
    "generator family": "dplase.generators.registry:FAMILIES",
    "checkpoint format": "dplase.generators.importers:IMPORTERS",
    "dataset": "dplase.data:DATASETS",
    "method": "dplase.methods:METHODS",
    "walk": "dplase.walks:WALKS",
    "evaluation walk": "dplase.walks:EVAL_WALKS",
    "metric": "dplase.metrics:METRICS",
    "figure": "dplase.plots:FIGURES",
    "stage": "dplase.stages:STAGES",
}


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (a key of `REGISTRIES`)."""
    if kind not in REGISTRIES:
        raise KeyError(f"no registry of kind '{kind}'; known: {', '.join(REGISTRIES)}")
    module, _, name = REGISTRIES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def is_imported(model: dict) -> bool:
    """Whether a model entry's checkpoint is a foreign file the workflow imports (it names a `format`)."""
    return bool(model.get("checkpoint") and model.get("format"))


def is_planted(model: dict) -> bool:
    """Whether a model entry's family is planted: built from its `planted` options instead of trained from its
    `train` recipe (the family registry's ``planted`` fact)."""
    return bool(registry("generator family")[model.get("family", "dcgan")].get("planted"))
