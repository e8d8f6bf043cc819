"""Seeded fuzz of artifact loading: random bytes, truncations, bit flips and byte swaps of real artifacts, foreign
zips and pickles carrying code. Every case is an `ArtifactError` naming the file in one line, or loads intact
(the corruption hit bytes nothing reads, such as zip padding: then the sha256 checks pass and the content
equals the original); never another exception, never silently changed content. Plus the CLI: exit code 2 and
a one-line message, no traceback."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dplase.artifacts import FORMAT_KEY, ArtifactError, load_artifact, save_artifact
from dplase.cli import main
from dplase.directions import DirectionSet
from dplase.generators.dcgan import DCGANAdapter
from dplase.generators.registry import load_generator, save_generator

ARCH = {"z_dim": 4, "image_size": 32, "channels": 1, "width": 2}
N_RANDOM, N_FLIPS, N_SWAPS, CUTS = 500, 250, 100, 50


class _System:
    """Unpickling this would run a shell command that creates ``marker`` (it must never run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real DirectionSet (with channel masks and an extra tensor) and a real generator checkpoint."""
    root = tmp_path_factory.mktemp("real")
    gen = torch.Generator().manual_seed(0)
    directions = torch.linalg.qr(torch.randn(8, 3, generator=gen))[0].T
    masks = torch.zeros(3, 2, 4).index_fill_(1, torch.tensor([0]), 1.0)
    DirectionSet(directions, torch.tensor([3.0, 2.0, 1.0]), "random", {"k": 3}, seed=1, channel_masks=masks,
                 extra={"scale": torch.ones(2)}).save(root / "directions.pt")
    adapter = DCGANAdapter.build(ARCH, seed=0)
    save_generator(root / "generator.pt", adapter.net, "dcgan", ARCH, adapter.prior.to_config(), {"seed": 0})
    return {"directions": root / "directions.pt", "generator": root / "generator.pt"}


def _equal(a: Any, b: Any) -> bool:
    """Same tensor (or both absent); anything else a corrupted file could hold is "not equal"."""
    if a is None or b is None:
        return a is b
    return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)


def _same_directions(a: DirectionSet, b: DirectionSet) -> bool:
    return (_equal(a.directions, b.directions) and _equal(a.scores, b.scores)
            and _equal(a.channel_masks, b.channel_masks) and a.extra.keys() == b.extra.keys()
            and all(_equal(a.extra[k], b.extra[k]) for k in a.extra)
            and (a.method, a.config, a.walk, a.layer, a.seed) == (b.method, b.config, b.walk, b.layer, b.seed))


def _same_generator(a: Any, b: Any) -> bool:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    # (the adapter's name and checkpoint sha256 come from the file's name and bytes, so they differ)
    return (sa.keys() == sb.keys() and all(_equal(sa[k], sb[k]) for k in sa)
            and a.prior.to_config() == b.prior.to_config())


LOADERS: dict[str, tuple[Callable[[Path], Any], Callable[[Any, Any], bool]]] = {
    "directions": (DirectionSet.load, _same_directions),
    "generator": (load_generator, _same_generator),
}


class Fuzz:
    """Writes each case to one file, loads it, and tallies the outcome per kind of bad input."""

    def __init__(self, root: Path, real: dict[str, Path]) -> None:
        self.path = root / "case file.pt"  # a space in the name: messages must still name it
        self.originals = {kind: LOADERS[kind][0](path) for kind, path in real.items()}
        self.counts: Counter = Counter()
        self.failures: list[str] = []

    def check(self, what: str, data: bytes, kind: str | None) -> None:
        """``kind``: the real artifact ``data`` was made from (the loader to use), or None (any: all three)."""
        self.path.write_bytes(data)
        loaders = [kind] if kind else ["raw", "directions", "generator"]
        for name in loaders:
            load = load_artifact if name == "raw" else LOADERS[name][0]
            try:
                loaded = load(self.path)
            except ArtifactError as err:
                message = str(err)
                if str(self.path) in message and "\n" not in message:
                    self.counts[(what, "clear error")] += 1
                else:
                    self.failures.append(f"{what}: message does not name the file in one line: {message!r}")
                continue
            except Exception as err:  # a traceback for the user: the defect this test exists for
                self.failures.append(f"{what} ({name}): {type(err).__name__}: {err}")
                continue
            if name in LOADERS and LOADERS[name][1](loaded, self.originals[name]):
                self.counts[(what, "loaded intact")] += 1
            else:
                self.failures.append(f"{what} ({name}): loaded, but not the original content")


@pytest.fixture(scope="module")
def fuzz(real: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Fuzz:
    """Every fuzz case, run once (seeded); the tests below read its tallies."""
    rng = np.random.default_rng(18)
    run = Fuzz(tmp_path_factory.mktemp("fuzz"), real)
    prefixes = [b"", b"PK\x03\x04", b"\x80\x02"]  # plain noise, and noise that gets past the zip/pickle magic
    for i in range(N_RANDOM):
        run.check("random bytes", prefixes[i % 3] + rng.bytes(int(rng.integers(0, 4096))), None)
    for kind, path in real.items():
        data = path.read_bytes()
        for i in range(CUTS):
            run.check("truncation", data[: len(data) * i // CUTS], kind)
        for bit in rng.integers(0, len(data) * 8, N_FLIPS):
            flipped = bytearray(data)
            flipped[bit // 8] ^= 1 << (bit % 8)
            run.check("bit flip", bytes(flipped), kind)
        for _ in range(N_SWAPS):
            i, j = rng.choice(len(data), 2, replace=False)
            swapped = bytearray(data)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            run.check("byte swap", bytes(swapped), kind)
    for kind, data in foreign_files(real, rng, run.path.parent / "code-ran"):
        run.check(kind, data, None)
    assert not (run.path.parent / "code-ran").exists()  # no pickled code ran, in any case
    return run


def foreign_files(real: dict[str, Path], rng: np.random.Generator, marker: Path) -> list[tuple[str, bytes]]:
    """Zips with a foreign payload, torch files of other things, and pickles that would run code."""
    cases: list[tuple[str, bytes]] = []

    def zipped(entries: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, payload in entries.items():
                archive.writestr(name, payload)
        return buffer.getvalue()

    def torch_bytes(obj: Any) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    cases += [("foreign zip", zipped({"readme.txt": b"hello"})),
              ("foreign zip", zipped({"archive/data.pkl": rng.bytes(300), "archive/version": b"3\n"})),
              ("foreign zip", zipped({"archive/data.pkl": pickle.dumps({"a": 1}), "archive/version": b"3\n"}))]
    with zipfile.ZipFile(real["directions"]) as archive:  # the real archive, its pickle swapped for another
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    pkl = next(name for name in entries if name.endswith("data.pkl"))
    cases.append(("foreign zip", zipped({**entries, pkl: pickle.dumps(_System(marker), protocol=2)})))
    cases.append(("foreign zip", zipped({**entries, pkl: pickle.dumps([1, 2, 3], protocol=2)})))
    cases += [("foreign torch file", torch_bytes(obj)) for obj in
              (torch.zeros(3), [torch.ones(2)], {"weights": torch.ones(2)}, {FORMAT_KEY: 2, "kind": "directions"},
               {FORMAT_KEY: 2, "kind": "generator", "tensors": [], "meta_json": "{}"})]
    cases += [("pickle with code", pickle.dumps(_System(marker), protocol=protocol))
              for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    cases.append(("pickle with code", torch_bytes({FORMAT_KEY: 2, "kind": "generator", "tensors": _System(marker)})))
    return cases


def test_no_bad_input_escapes_as_another_exception_or_silent_corruption(fuzz: Fuzz) -> None:
    assert fuzz.failures == [], "\n".join(fuzz.failures[:10])


def test_every_kind_of_bad_input_ran_and_most_are_refused(fuzz: Fuzz) -> None:
    tried = Counter()
    for (what, _), n in fuzz.counts.items():
        tried[what] += n
    assert tried["random bytes"] == 3 * N_RANDOM  # each through the raw, directions and generator loaders
    assert tried["truncation"] == 2 * CUTS and tried["bit flip"] == 2 * N_FLIPS and tried["byte swap"] == 2 * N_SWAPS
    assert tried["foreign zip"] == 3 * 5 and tried["foreign torch file"] == 3 * 5
    assert tried["pickle with code"] == 3 * (pickle.HIGHEST_PROTOCOL + 2)
    for what in ("random bytes", "truncation", "foreign zip", "foreign torch file", "pickle with code"):
        assert fuzz.counts[(what, "loaded intact")] == 0, what  # none of these can hold the original content
    assert fuzz.counts[("bit flip", "clear error")] > N_FLIPS  # over half of the 2 x N_FLIPS flips


def test_old_files_without_checksums_still_load(tmp_path: Path) -> None:
    ds = DirectionSet(torch.eye(2, 4), torch.ones(2), "random", {"k": 2})
    path = ds.save(tmp_path / "new.pt")
    payload = torch.load(path, weights_only=True)
    old = {FORMAT_KEY: 1, "kind": "directions", "meta_json": payload["meta_json"], "tensors": payload["tensors"]}
    torch.save(old, tmp_path / "old.pt")
    assert torch.equal(DirectionSet.load(tmp_path / "old.pt").directions, ds.directions)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["tensors"]["directions"].mul_(-1), r"directions weights do not match their recorded sha256"),
    (lambda p: p.update(meta_json=p["meta_json"].replace('"random"', '"sefa"')),
     r"directions metadata does not match its recorded sha256"),
    (lambda p: p.pop("tensors_sha256"), r"directions weights do not match their recorded sha256"),
    (lambda p: p.update({FORMAT_KEY: 3}), r"unsupported dplase artifact format 3"),
])
def test_a_consistent_pickle_with_changed_content_fails_the_sha256_check(tmp_path: Path, edit, message) -> None:
    path = DirectionSet(torch.eye(2, 4), torch.ones(2), "random", {"k": 2}).save(tmp_path / "d.pt")
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match=rf"d\.pt: .*{message}"):
        DirectionSet.load(path)


def test_hand_made_files_with_incomplete_metadata_are_artifact_errors(tmp_path: Path) -> None:
    save_artifact(tmp_path / "d.pt", "directions", {"directions": torch.eye(2)}, {"method": "random"})
    with pytest.raises(ArtifactError, match=r"d\.pt: not a valid DirectionSet \(KeyError"):
        DirectionSet.load(tmp_path / "d.pt")
    adapter = DCGANAdapter.build(ARCH, seed=0)
    path = save_generator(tmp_path / "g.pt", adapter.net, "dcgan", ARCH, {"name": "nope"}, {})
    with pytest.raises(ArtifactError, match=r"g\.pt: generator metadata is incomplete or invalid"):
        load_generator(path)


# ------------------------------------------------------------------------------------------------------ CLI


def _bad_files(real: dict[str, Path], root: Path) -> list[Path]:
    """A few bad generator files: noise, a truncation, a flipped weight byte, a file of another kind."""
    rng = np.random.default_rng(5)
    data = real["generator"].read_bytes()
    noise, cut, flipped = root / "noise.pt", root / "cut.pt", root / "flipped.pt"
    noise.write_bytes(rng.bytes(2000))
    cut.write_bytes(data[: len(data) // 3])
    for position in rng.integers(0, len(data), 100):  # the first seeded flip that changes what is read
        changed = bytearray(data)
        changed[position] ^= 0x10
        flipped.write_bytes(bytes(changed))
        try:
            load_generator(flipped)
        except ArtifactError:
            break
    return [noise, cut, flipped, real["directions"]]


def _one_line_error(output: str, path: Path) -> bool:
    lines = output.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith(f"Error: {path}: ") and "Traceback" not in output


def test_cli_discover_with_a_bad_generator_exits_2_with_one_line(real: dict[str, Path], tmp_path: Path) -> None:
    for bad in _bad_files(real, tmp_path):
        out = tmp_path / "d.pt"
        result = CliRunner().invoke(main, ["discover", "--generator", str(bad), "--method", "sefa", "--k", "2",
                                           "--out", str(out), "--no-progress"])
        assert result.exit_code == 2, (bad, result.output)
        assert _one_line_error(result.output, bad), result.output
        assert not out.exists()


def test_cli_evaluate_with_bad_directions_exits_2_with_one_line(real: dict[str, Path], tmp_path: Path) -> None:
    for bad in _bad_files(real, tmp_path)[:3]:
        out = tmp_path / "m.parquet"
        result = CliRunner().invoke(main, ["evaluate", "--generator", str(real["generator"]), "--directions",
                                           str(bad), "--predictor", str(bad), "--out", str(out), "--no-progress"])
        assert result.exit_code == 2, (bad, result.output)
        assert _one_line_error(result.output, bad), result.output
        assert not out.exists()


def test_cli_real_process_exit_code_and_message(real: dict[str, Path], tmp_path: Path) -> None:
    bad = _bad_files(real, tmp_path)[0]
    dplase = Path(sys.executable).parent / "dplase"
    result = subprocess.run([str(dplase), "discover", "--generator", str(bad), "--method", "sefa", "--out",
                             str(tmp_path / "d.pt")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert _one_line_error(result.stderr, bad) and result.stdout == "", result.stderr
