"""Generator families by name (`FAMILIES`), and the generator checkpoint format.

A family is one file holding its network and its `GeneratorAdapter` subclass, whose ``network`` attribute is
the network class built from a checkpoint's ``arch``; adding one is that file plus one line in `FAMILIES`.

A generator checkpoint is a `dplase.artifacts` file of kind "generator": tensors {"generator": state dict}
(plus optional training extras), meta {"family", "arch", "prior", "dataset", "seed", "steps", "config",
"config_hash", "weights_sha256", ...}.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dplase.artifacts import ArtifactError, load_artifact, save_artifact, sha256_file, sha256_tensors
from dplase.generators.base import GeneratorAdapter
from dplase.priors import prior_from_config
from dplase.registry import Registry

#: family name -> its adapter class (imported on first use)
#: (``trainable``: the workflow's train_gan trains it; ``planted``: its adapters know their true directions;
#: ``spaces``: the latent spaces its adapters can walk in, when more than z)
FAMILIES = Registry("generator family", {
    "dcgan": ("dplase.generators.dcgan:DCGANAdapter", {"trainable": True}),
    "planted": ("dplase.generators.planted:PlantedAdapter", {"planted": True}),
    "biggan": ("dplase.generators.biggan:BigGANAdapter", {}),
    "stylegan2": ("dplase.generators.stylegan2:StyleGAN2Adapter", {"trainable": True, "spaces": ("z", "w")}),
})


def save_generator(
    path: str | os.PathLike, net: torch.nn.Module, family: str, arch: dict[str, Any],
    prior: dict[str, Any], meta: dict[str, Any], extra_tensors: dict[str, Any] | None = None,
) -> Path:
    """Write a generator checkpoint atomically (weights' sha256 recorded in the metadata)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown generator family '{family}'; known: {', '.join(FAMILIES)}")
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    tensors = {"generator": state, **(extra_tensors or {})}
    full_meta = {**meta, "family": family, "arch": arch, "prior": prior, "weights_sha256": sha256_tensors(state)}
    return save_artifact(path, "generator", tensors, full_meta)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> GeneratorAdapter:
    """Load a generator checkpoint as an adapter on ``device`` (weights_only; clear errors)."""
    tensors, meta = load_artifact(path, kind="generator")
    family = meta.get("family")
    if family not in FAMILIES:
        raise ArtifactError(f"{path}: unknown generator family '{family}'; known: {', '.join(FAMILIES)}")
    adapter_cls = FAMILIES[family].load()
    state = tensors.get("generator")
    try:
        weights_ok = isinstance(state, dict) and sha256_tensors(state) == meta.get("weights_sha256")
    except (AttributeError, TypeError, RuntimeError):  # a hand-made file whose "generator" holds non-tensors
        weights_ok = False
    if not weights_ok:
        raise ArtifactError(f"{path}: generator weights do not match their recorded sha256 (corrupted file)")
    try:
        net = adapter_cls.network(**meta["arch"])
        prior = prior_from_config(meta["prior"])
    except (KeyError, TypeError, ValueError) as err:  # a hand-made file with incomplete or foreign metadata
        raise ArtifactError(f"{path}: generator metadata is incomplete or invalid ({type(err).__name__}: "
                            f"{err})") from err
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        reason = " ".join(str(err).split())  # torch's message spans lines; an error message is one line
        raise ArtifactError(f"{path}: weights do not fit architecture {meta['arch']}: {reason}") from err
    name = meta.get("name") or Path(path).stem
    return adapter_cls(net, prior, device=device, checkpoint_sha256=sha256_file(path), name=name)


def generator_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of a generator checkpoint (dataset, prior, arch, ...) without building the network."""
    return load_artifact(path, kind="generator")[1]
