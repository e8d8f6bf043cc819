"""Artifact files: plain tensors plus JSON-able metadata, written atomically, loaded with weights_only.

Every artifact the project writes (generator checkpoints, direction sets, predictors, trainer checkpoints)
goes through `save_artifact` / `load_artifact`, so there is one place that guarantees: no pickled code, atomic
replacement (a crash never leaves a file that looks complete), and clear errors for foreign or broken files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dplase import __version__

FORMAT_KEY = "dplase_format"


class ArtifactError(ValueError):
    """A file is missing, truncated, corrupted or not a dplase artifact of the expected kind."""


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` and rename it into place.

    The rename is atomic on POSIX, so readers see either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_tensors(tensors: dict[str, torch.Tensor]) -> str:
    """Order-independent sha256 of named tensors (name, dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # reshape(-1): a 0-d tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def config_hash(config: Any, length: int = 12) -> str:
    """Short stable hash of a JSON-able config (keys sorted)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def save_artifact(path: str | os.PathLike, kind: str, tensors: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Save ``tensors`` (a possibly nested dict of tensors / numbers / lists) and JSON ``meta`` atomically.

    ``kind`` names what the file is ("generator", "directions", ...); `load_artifact` checks it.
    """
    meta = {**meta, "kind": kind, "package_version": meta.get("package_version", __version__)}
    payload = {FORMAT_KEY: 1, "kind": kind, "meta_json": json.dumps(meta, sort_keys=True), "tensors": tensors}

    def write(tmp: Path) -> None:
        torch.save(payload, tmp)

    return atomic_write(path, write)


def load_artifact(
    path: str | os.PathLike, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load an artifact saved by `save_artifact`; returns ``(tensors, meta)``.

    Uses ``torch.load(weights_only=True)``: a file carrying pickled code is refused, never executed.
    Raises `ArtifactError` naming the file for a missing, truncated, corrupted or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        payload = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except Exception as err:  # whatever torch's weights-only unpickler raises (IndexError, KeyError, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArtifactError(
            f"{path}: not a readable dplase artifact (corrupted, truncated, or not a weights-only torch file): "
            f"{first}"
        ) from err
    if not isinstance(payload, dict) or payload.get(FORMAT_KEY) != 1:
        raise ArtifactError(f"{path}: not a dplase artifact (missing '{FORMAT_KEY}' header)")
    if kind is not None and payload.get("kind") != kind:
        raise ArtifactError(f"{path}: expected a '{kind}' artifact, found '{payload.get('kind')}'")
    return payload["tensors"], json.loads(payload["meta_json"])
