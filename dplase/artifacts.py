"""Artifact files: plain tensors plus JSON-able metadata, written atomically, loaded with weights_only.

Every artifact the project writes (generator checkpoints, direction sets, predictors, trainer checkpoints)
goes through `save_artifact` / `load_artifact`, so there is one place that guarantees: no pickled code, atomic
replacement (a crash never leaves a file that looks complete), a sha256 of the tensors and of the metadata
checked on every load (a corruption that still unpickles is caught, not silently used), and one-line
`ArtifactError`s naming the file for foreign or broken files, whatever the unpickler raises.
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
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new file), where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


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


#: format 2 adds a sha256 of the tensors and of the metadata (checked on load); format 1 files still load
FORMAT = 2
#: longest torch error text quoted in an ArtifactError (a fuzzed file can make it very long)
MAX_REASON = 200


def _digest_tree(obj: Any, digest: Any) -> None:
    """Feed a nested dict/list/tuple of tensors and plain values to ``digest``, type-tagged and key-sorted."""
    if torch.is_tensor(obj):
        tensor = obj.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():  # reshape(-1): a 0-d tensor cannot be viewed as bytes
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}|".encode())
        for key in sorted(obj, key=repr):  # keys may mix int and str (optimizer state dicts)
            digest.update(f"{key!r}=".encode())
            _digest_tree(obj[key], digest)
    elif isinstance(obj, list | tuple):
        digest.update(f"{type(obj).__name__[0]}{len(obj)}|".encode())
        for item in obj:
            _digest_tree(item, digest)
    else:  # str, int, float, bool, None: repr round-trips exactly
        digest.update(f"V{type(obj).__name__}:{obj!r}|".encode())


def sha256_tree(tree: Any) -> str:
    """sha256 of a nested structure of tensors and plain values (what an artifact's tensors hold)."""
    digest = hashlib.sha256()
    _digest_tree(tree, digest)
    return digest.hexdigest()


def save_artifact(path: str | os.PathLike, kind: str, tensors: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Save ``tensors`` (a possibly nested dict of tensors / numbers / lists) and JSON ``meta`` atomically.

    ``kind`` names what the file is ("generator", "directions", ...); `load_artifact` checks it. The sha256
    of the tensors and of the metadata go in the header, so a corruption that still unpickles is caught.
    """
    meta = {**meta, "kind": kind, "package_version": meta.get("package_version", __version__)}
    meta_json = json.dumps(meta, sort_keys=True)
    payload = {FORMAT_KEY: FORMAT, "kind": kind, "meta_json": meta_json, "tensors": tensors,
               "tensors_sha256": sha256_tree(tensors), "meta_sha256": hashlib.sha256(meta_json.encode()).hexdigest()}

    def write(tmp: Path) -> None:
        torch.save(payload, tmp)

    return atomic_write(path, write)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= MAX_REASON else line[:MAX_REASON] + "..."


def load_artifact(
    path: str | os.PathLike, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load an artifact saved by `save_artifact`; returns ``(tensors, meta)``.

    Uses ``torch.load(weights_only=True)``: a file carrying pickled code is refused, never executed.
    Raises `ArtifactError` naming the file for a missing, truncated, corrupted or foreign file: whatever the
    unpickler raises, and when the tensors or metadata do not match the sha256 recorded at writing.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        payload = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    except Exception as err:  # whatever the weights-only unpickler raises (IndexError, KeyError, MemoryError...)
        raise ArtifactError(
            f"{path}: not a readable dplase artifact (corrupted, truncated, or not a weights-only torch file): "
            f"{_first_line(err)}"
        ) from err
    if not isinstance(payload, dict) or FORMAT_KEY not in payload:
        raise ArtifactError(f"{path}: not a dplase artifact (missing '{FORMAT_KEY}' header)")
    if payload[FORMAT_KEY] not in (1, FORMAT):
        raise ArtifactError(f"{path}: unsupported dplase artifact format {payload[FORMAT_KEY]!r} (this version "
                            f"reads 1 and {FORMAT}; a newer dplase wrote it, or the file is corrupted)")
    if kind is not None and payload.get("kind") != kind:
        raise ArtifactError(f"{path}: expected a '{kind}' artifact, found '{payload.get('kind')}'")
    what = payload.get("kind") if isinstance(payload.get("kind"), str) else "artifact"
    tensors, meta_json = payload.get("tensors"), payload.get("meta_json")
    if not isinstance(tensors, dict) or not isinstance(meta_json, str):
        raise ArtifactError(f"{path}: not a dplase artifact (no tensors or metadata)")
    if payload[FORMAT_KEY] != 1:  # format 1 (older files) recorded no checksums
        try:
            tensors_ok = sha256_tree(tensors) == payload.get("tensors_sha256")
        except Exception as err:  # a corrupted file can hold values no digest expects
            raise ArtifactError(f"{path}: {what} tensors cannot be checked ({_first_line(err)})") from err
        if not tensors_ok:
            raise ArtifactError(f"{path}: {what} weights do not match their recorded sha256 (corrupted file)")
        if hashlib.sha256(meta_json.encode("utf-8", "surrogatepass")).hexdigest() != payload.get("meta_sha256"):
            raise ArtifactError(f"{path}: {what} metadata does not match its recorded sha256 (corrupted file)")
    try:
        meta = json.loads(meta_json)
    except ValueError as err:
        raise ArtifactError(f"{path}: {what} metadata is not valid JSON ({_first_line(err)})") from err
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: {what} metadata is not a JSON object")
    return tensors, meta
