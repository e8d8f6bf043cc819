"""pytorch-pretrained-biggan checkpoints: a folder with ``pytorch_model.bin`` (the state dict of its ``BigGAN``)
and ``config.json`` (its ``BigGANConfig``), as huggingface/pytorch-pretrained-BigGAN publishes BigGAN-deep
128/256/512, into the `biggan` family.

The state dict's keys are `dplase.generators.biggan.BigGANGenerator`'s own, so the conversion renames nothing:
it reads and checks the config, checks every key and shape against the network that config builds, and fixes
the options. Options: ``classes`` (required; one class index, or a list of exactly one: the adapter generates
one class, run one model entry per class) and ``truncation`` (in (0, 1], default 1.0, as the reference's
``truncated_noise_sample``): the batchnorm statistics are those of this truncation and the prior is
``truncation * N(0, 1)`` truncated to [-2, 2] per dimension.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dplase.generators.importers import Converted, ImportFormatError, check_keys, load_tensors

WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
#: config.json keys that fix the layout (class_embed_dim is optional: the reference does not read it)
REQUIRED_KEYS = ("output_dim", "z_dim", "channel_width", "num_classes", "layers", "attention_layer_position",
                 "eps", "n_stats")
OPTIONS = ("classes", "truncation")
#: the reference's truncated normal bound, in standard deviations (truncnorm.rvs(-2, 2))
TRUNCATION_BOUND = 2.0


def locate(path: Path) -> tuple[Path, Path]:
    """(weights, config) for a folder, a pytorch_model.bin or a config.json path."""
    if path.is_dir():
        return path / WEIGHTS_NAME, path / CONFIG_NAME
    if path.name == CONFIG_NAME:
        return path.with_name(WEIGHTS_NAME), path
    return path, path.with_name(CONFIG_NAME)


def read_config(path: Path) -> dict[str, Any]:
    """The checked config.json at ``path`` (clear errors naming the file and the key)."""
    if not path.is_file():
        raise ImportFormatError(f"{path}: missing: a pytorch-pretrained-biggan checkpoint keeps its {CONFIG_NAME} "
                                f"beside {WEIGHTS_NAME} (the architecture is read from it)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ImportFormatError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ImportFormatError(f"{path}: expected a JSON object of BigGANConfig fields, got {type(config).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ImportFormatError(f"{path}: missing key(s) {', '.join(missing)} (a BigGANConfig has "
                                f"{', '.join(REQUIRED_KEYS)})")
    for key in ("output_dim", "z_dim", "channel_width", "num_classes", "attention_layer_position", "n_stats"):
        if not _is_int(config[key]) or (key != "attention_layer_position" and config[key] <= 0):
            raise ImportFormatError(f"{path}: key '{key}' must be a positive integer, got {config[key]!r}")
    if not isinstance(config["eps"], numbers.Real) or isinstance(config["eps"], bool) or not config["eps"] > 0:
        raise ImportFormatError(f"{path}: key 'eps' must be a positive number, got {config['eps']!r}")
    layers = config["layers"]
    if not isinstance(layers, list) or not all(_is_layer(layer) for layer in layers):
        raise ImportFormatError(f"{path}: key 'layers' must be a list of [up_sample, in, out] "
                                f"(bool, int, int), got {layers!r}")
    return config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_layer(layer: Any) -> bool:
    return (isinstance(layer, list) and len(layer) == 3 and isinstance(layer[0], bool)
            and _is_int(layer[1]) and _is_int(layer[2]))


def read_options(options: Mapping[str, Any], config: Mapping[str, Any], config_path: Path) -> tuple[int, float]:
    """(class index, truncation) from the import options, checked against the config's num_classes (errors
    name ``config_path``, the model they are checked against)."""
    where = f"{config_path}: biggan import option"
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ImportFormatError(f"{where}(s) {', '.join(unknown)} unknown; known: {', '.join(OPTIONS)}")
    if "classes" not in options:
        raise ImportFormatError(f"{where} 'classes' is required: the class index to generate (an ImageNet index "
                                f"for the published models, e.g. classes: [207])")
    classes = [options["classes"]] if _is_int(options["classes"]) else options["classes"]
    if not isinstance(classes, list | tuple) or len(classes) != 1 or not _is_int(classes[0]):
        raise ImportFormatError(f"{where} 'classes' must be one class index or a list of exactly one (a model "
                                f"entry generates one class: use one entry per class), got {options['classes']!r}")
    index, n_classes = classes[0], config["num_classes"]
    if not 0 <= index < n_classes:
        raise ImportFormatError(f"{config_path}: class index {index} (option 'classes') is out of range: "
                                f"num_classes is {n_classes}, so 0 to {n_classes - 1}")
    truncation = options.get("truncation", 1.0)
    if not isinstance(truncation, numbers.Real) or isinstance(truncation, bool) or not 0 < truncation <= 1:
        raise ImportFormatError(f"{where} 'truncation' must be a number in (0, 1] (the reference's range), got "
                                f"{truncation!r}")
    return index, float(truncation)


def expected_shapes(arch: dict[str, Any], config_path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the network ``arch`` builds (on the meta device: nothing allocated)."""
    import torch

    from dplase.generators.biggan import BigGANGenerator

    try:
        with torch.device("meta"):
            net = BigGANGenerator(**arch)
    except ValueError as err:
        raise ImportFormatError(f"{config_path}: not a BigGAN-deep configuration: {err}") from err
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def convert(path: Path, options: dict[str, Any]) -> Converted:
    """A pytorch-pretrained-biggan folder (or its pytorch_model.bin / config.json) as a `biggan` generator."""
    from dplase.artifacts import sha256_file
    from dplase.generators.biggan import CONFIG_KEYS

    weights_path, config_path = locate(Path(path))
    config = read_config(config_path)
    class_index, truncation = read_options(options, config, config_path)
    arch = {k: config[k] for k in CONFIG_KEYS if k in config}
    arch.setdefault("class_embed_dim", config["z_dim"])
    arch.update(class_index=class_index, truncation=truncation)
    want = expected_shapes(arch, config_path)
    state = load_tensors(weights_path)
    if not isinstance(state, Mapping):
        raise ImportFormatError(f"{weights_path}: expected a state dict (a dict of tensors), got "
                                f"{type(state).__name__}")
    check_keys(weights_path, "the BigGAN-deep state dict", state, want)
    prior = {"name": "truncated_normal", "dim": config["z_dim"], "truncation": truncation,
             "bound": TRUNCATION_BOUND}
    meta = {"class_index": class_index, "truncation": truncation, "biggan_config": config,
            "source_sha256": sha256_file(weights_path), "name": weights_path.parent.name}
    return Converted(family="biggan", arch=arch, state=dict(state), prior=prior, meta=meta)
