"""The walk explorer: frames are the evaluation's own walks from its seeded start latents, the page states the
runs and factors, caps hold, the stage and the CLI write it, and in headless Chromium a slider moved with
synthetic mouse and key events shows exactly the expected frame, without console errors."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dplase.cli import main
from dplase.config.paths import result_path
from dplase.directions import DirectionSet
from dplase.explorer import write_explorer
from dplase.generators.registry import load_generator
from dplase.metrics.context import EvalConfig
from dplase.walks import walk_for

ROOT = Path(__file__).resolve().parent.parent
EVAL = {"metrics": ["attr", "recovery", "exact"], "n_samples": 6, "seed": 3, "n_steps": 5, "n_real": 100}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _save_run(root: Path, run_id: str, directions: DirectionSet, generator: Path, predictor: Path,
              model: str, dataset: str, walks: tuple[str, ...] = ("linear", "norm")) -> dict[str, str]:
    from dplase.jobs import evaluate_job

    path = Path(result_path(str(root), "directions", run_id=run_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    directions.save(path)
    evaluate_job(evaluation={**EVAL, "walks": list(walks)}, generator=generator, directions=path,
                 predictor=predictor, out=result_path(str(root), "run_metrics", run_id=run_id), run_id=run_id,
                 model=model, model_seed=0, dataset=dataset, params={"k": 3}, progress=False)
    return {"run_id": run_id, "generator": str(generator), "directions": str(path)}


def _predictor(root: Path, data, name: str) -> Path:
    from dplase.metrics.predictor import FactorPredictor

    torch.manual_seed(0)
    net = FactorPredictor(1, 32, data.factor_specs, width=8, feature_dim=16)
    net.meta = {"dataset": data.to_config()}
    return net.save(root / "predictors" / f"{name}.pt")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A tiny finished study in the workflow's layout: a planted generator (oracle, SeFa, random, and the
    oracle with channel masks: walk masked) and an untrained DCGAN (SeFa), each run evaluated on 6 starts."""
    from dplase.data import load_dataset
    from dplase.generators.dcgan import DCGANAdapter
    from dplase.generators.planted import save_planted
    from dplase.generators.registry import save_generator
    from dplase.methods import fit
    from dplase.results import collect

    root = tmp_path_factory.mktemp("study") / "results"
    planted = Path(result_path(str(root), "generator", dataset="planted", model="planted", model_seed=0))
    planted.parent.mkdir(parents=True)
    save_planted(planted, z_dim=8, image_size=32, seed=0)
    pred = _predictor(root, load_dataset("planted", image_size=32, z_dim=8, size=300), "planted")
    adapter = load_generator(planted)
    oracle = fit("oracle", adapter, {"k": 3})
    masks = torch.zeros(3, 2, 6)
    masks[:, 0, :3], masks[:, 1, 3:] = 1, 1
    runs = [_save_run(root, f"{m}-000000000{i}", fit(m, adapter, {"k": 3}), planted, pred, "planted", "planted")
            for i, m in enumerate(("oracle", "sefa", "random"))]
    runs.append(_save_run(root, "oracle-0000000009", replace(oracle, channel_masks=masks), planted, pred, "planted",
                          "planted", walks=("norm", "masked")))
    arch = {"z_dim": 8, "image_size": 32, "channels": 1, "width": 8}
    dcgan = Path(result_path(str(root), "generator", dataset="shapes", model="dcgan", model_seed=0))
    dcgan.parent.mkdir(parents=True)
    net = DCGANAdapter.build(arch, seed=0)
    save_generator(dcgan, net.net, "dcgan", arch, net.prior.to_config(), {"name": "dcgan", "seed": 0})
    shapes_pred = _predictor(root, load_dataset("shapes", image_size=32, seed=0), "shapes")
    runs.append(_save_run(root, "sefa-0000000005", fit("sefa", load_generator(dcgan), {"k": 3}), dcgan,
                          shapes_pred, "dcgan", "shapes"))
    collect([result_path(str(root), "run_metrics", run_id=r["run_id"]) for r in runs], root / "metrics.parquet")
    return {"root": root, "runs": runs, "metrics": root / "metrics.parquet"}


@pytest.fixture(scope="module")
def page(study) -> Path:
    return write_explorer(study["metrics"], study["runs"], study["root"] / "explorer" / "index.html", n_starts=3)


def page_data(path: Path) -> dict:
    text = path.read_text()
    match = re.search(r'<script id="dplase-explorer-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(match.group(1).replace("<\\/", "</"))


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA"))


def strip_frame(run: dict, walk: str, j: int, s: int, i: int) -> np.ndarray:
    """Frame i of the page's strip of (walk, direction j, start s), gray H x W."""
    strip = decode_png(base64.b64decode(run["walks"][walk][j]["strips"][s]))
    h, w = run["image"][:2]
    return strip[:h, i * w:(i + 1) * w, 0]


def expected_frame(study: dict, run_id: str, walk: str, j: int, s: int, i: int) -> np.ndarray:
    """The frame rendered independently: start s of direction j's block of the evaluation's z0 (seed 3, 6 per
    direction), walked to step i of its grid, as gray uint8."""
    from dplase.subspace import masked_images

    run = next(r for r in study["runs"] if r["run_id"] == run_id)
    adapter, directions = load_generator(run["generator"]), DirectionSet.load(run["directions"])
    step = float(EvalConfig(n_steps=EVAL["n_steps"]).step_grid(adapter.prior)[i])
    n = EVAL["n_samples"]
    z0 = adapter.prior.sample(directions.k * n, EVAL["seed"])[j * n + s: j * n + s + 1]
    z = walk_for(directions, walk)(z0, directions.directions[j], step) if step != 0 else z0
    if walk == "masked" and step != 0:
        metrics = pd.read_parquet(study["metrics"])
        group = metrics.query("run_id == @run_id and metric == 'masked_group' and direction == @j")["value"].item()
        layer = directions.layer or adapter.default_layer()
        image = masked_images(adapter, layer, z0, z, directions.channel_masks[j][int(group)])[0]
    else:
        image = adapter.generate(z)
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0, 0].numpy()


def same_frame(frame: np.ndarray, expected: np.ndarray) -> bool:
    """Equal up to one gray level on at most 1% of the pixels: the page renders each direction's shown starts
    in one batch (as the evaluation does its blocks), ``expected_frame`` one latent alone, and float sums of
    another batch size may round a value on the .5 boundary the other way."""
    diff = np.abs(frame.astype(int) - expected.astype(int))
    return frame.shape == expected.shape and diff.max() <= 1 and (diff > 0).mean() <= 0.01


# ------------------------------------------------------------------------------------------- the frames


def test_frames_are_the_evaluations_walks_from_its_own_start_latents(study, page):
    data = page_data(page)
    for run_id, run in data["runs"].items():
        assert run["steps"] == pytest.approx(list(EvalConfig(n_steps=5).step_grid(
            load_generator(next(r["generator"] for r in study["runs"] if r["run_id"] == run_id)).prior)))
        assert run["n_starts"] == 3 and run["eval_seed"] == 3 and run["image"] == [32, 32, 1]
        for walk in run["walks"]:
            for j in range(3):
                for s, i in ((0, 0), (0, 2), (1, 4), (2, 1)):
                    assert same_frame(strip_frame(run, walk, j, s, i), expected_frame(study, run_id, walk, j, s, i)), \
                        (run_id, walk, j, s, i)
    planted = [r for r in data["runs"].values() if r["model"] == "planted"]
    assert len({json.dumps(r["fingerprints"]) for r in planted}) == 1  # one replicate: the same start latents
    assert set(data["runs"]["oracle-0000000009"]["walks"]) == {"norm", "masked"}


def test_page_states_runs_factors_and_the_planted_match(study, page):
    data = page_data(page)
    assert [g["runs"] for g in data["groups"]] == [[r["run_id"] for r in study["runs"][:4]], ["sefa-0000000005"]]
    metrics = pd.read_parquet(study["metrics"])
    oracle = data["runs"]["oracle-0000000000"]
    assert oracle["protocol"]["seed"] == 3 and oracle["params"]["k"] == 3 and oracle["recovery"] == pytest.approx(1.0)
    for j, direction in enumerate(oracle["walks"]["norm"]):
        rows = metrics[(metrics["run_id"] == "oracle-0000000000") & (metrics["walk"] == "norm")
                       & (metrics["direction"] == j) & metrics["step"].isna()
                       & metrics["metric"].str.startswith("attr_change.")]
        top = rows.sort_values("value", ascending=False).head(3)
        assert [f for f, _ in direction["top"]] == [m.split(".", 1)[1] for m in top["metric"]]
        assert direction["matched"] == [["pos_x", "pos_y", "scale"][j], pytest.approx(1.0)]
        assert direction["exact"][0][0] == ["pos_x", "pos_y", "scale"][j]
    assert data["runs"]["sefa-0000000005"]["walks"]["norm"][0]["matched"] is None  # no planted truth
    group = data["runs"]["oracle-0000000009"]["walks"]["masked"][0]["group"]
    assert group[0] == metrics.query("run_id == 'oracle-0000000009' and metric == 'masked_group' and direction == 0"
                                     )["value"].item()


def test_caps_downscale_and_self_containment(study, tmp_path):
    path = write_explorer(study["metrics"], study["runs"][:2], tmp_path / "small.html", n_starts=10, image_size=16)
    data, text = page_data(path), path.read_text()
    run = data["runs"]["oracle-0000000000"]
    assert run["n_starts"] == 6 and run["image"] == [16, 16, 1] and run["native_size"] == 32  # all 6 starts
    assert strip_frame(run, "norm", 0, 0, 0).shape == (16, 16)
    assert not re.search(r"(src|href)=\"(?!data:)", text) and "http://" not in text and "https://" not in text
    assert data["meta"]["n_frames"] == 2 * 2 * 3 * 6 * 5 and data["meta"]["options"] == {"n_starts": 10,
                                                                                         "image_size": 16}


# ------------------------------------------------------------------------------------ stage, rule and CLI


def test_stage_takes_the_config_caps_and_the_shown_runs():
    from dplase.config import load_config, prepare
    from dplase.stages import STAGES

    sweep = prepare(load_config(ROOT / "config/config.yaml"))
    kwargs = sweep.job_kwargs("explore_walks", None)
    assert STAGES["explore_walks"]["local"] and (kwargs["n_starts"], kwargs["image_size"]) == (4, 64)
    assert [r["run_id"] for r in kwargs["runs"]] == [r.run_id for r in sweep.runs if r.model_seed == 0]
    config = load_config(ROOT / "config/config.yaml")
    config["explorer"].update(model_seeds=None, n_starts=2)
    everything = prepare(config).job_kwargs("explore_walks", None)
    assert len(everything["runs"]) == len(sweep.runs) and everything["n_starts"] == 2
    assert sweep.job_outputs("explore_walks", None) == {"out": "results/explorer/index.html"}


def test_cli_writes_the_page_of_a_results_folder(study, tmp_path):
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["explore", "--metrics", str(study["metrics"]), "--out", str(out),
                                       "--n-starts", "1", "--model-seeds", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert list(page_data(out)["runs"]) == [r["run_id"] for r in study["runs"]]
    bad = CliRunner().invoke(main, ["explore", "--metrics", str(study["metrics"]), "--run", "sefa-ffffffffff"])
    assert bad.exit_code == 2 and "no rows for run(s) sefa-ffffffffff" in bad.output


# ------------------------------------------------------------------------------------- headless Chromium


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands in on
    fd 3, replies out on fd 4, NUL-separated JSON), one page attached."""

    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 1000) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()

        def pipes_on_3_and_4() -> None:  # in the child: first out of the way (>= 10), then onto 3 and 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_r, from_w)]
            for fd, target in zip(high, (3, 4), strict=True):
                os.dup2(fd, target, inheritable=True)

        self.process = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                         "--remote-debugging-pipe", "about:blank"], preexec_fn=pipes_on_3_and_4,
                                        close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self.out, self.inp = os.fdopen(to_w, "wb", buffering=0), os.fdopen(from_r, "rb", buffering=0)
        self.buffer, self.last, self.events, self.session = b"", 0, [], None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def send(self, method: str, **params) -> dict:
        self.last += 1
        message = {"id": self.last, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        self.out.write(json.dumps(message).encode() + b"\0")
        deadline = time.time() + 60
        while True:
            while b"\0" not in self.buffer:
                ready, _, _ = select.select([self.inp], [], [], max(0.0, deadline - time.time()))
                assert ready, f"chromium did not answer {method} within 60 s"
                chunk = self.inp.read(1 << 20)
                assert chunk, "chromium closed the DevTools pipe"
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.last:
                assert "error" not in reply, (method, reply["error"])
                return reply.get("result", {})
            self.events.append(reply)

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}")

    def click(self, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", buttons=1, clickCount=1)

    def key(self, key: str, code: str, keycode: int, text: str = "") -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind if text or kind == "keyUp" else "rawKeyDown", key=key,
                      code=code, windowsVirtualKeyCode=keycode, **({"text": text} if text and kind == "keyDown"
                                                                  else {}))

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        self.js("0")  # a round trip, so that every event sent before it is read
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(json.dumps(params.get("args")))
            elif method == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        self.out.close()
        self.inp.close()


@pytest.fixture
def chromium(tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    browser = Chromium(binary, tmp_path / "profile")
    yield browser
    browser.close()


ROW = 'document.querySelector(\'.row[data-slot="{slot}"][data-direction="{j}"] {what}\')'


def shown(browser: Chromium, study: dict, page: Path, slot: int, j: int, run: str, walk: str, s: int,
          i: int) -> np.ndarray:
    """Wait until row (slot, j) says it shows frame i of (run, walk, j, start s), then check its canvas's pixels:
    exactly the page's frame, and the frame rendered independently (`same_frame`)."""
    canvas = ROW.format(slot=slot, j=j, what="canvas")
    browser.wait(f"{canvas}?.dataset.shown === {json.dumps('|'.join(map(str, (run, walk, j, s, i))))}")
    rgba = decode_png(base64.b64decode(browser.js(f"{canvas}.toDataURL('image/png')").split(",", 1)[1]))
    assert (rgba[..., 3] == 255).all() and (rgba[..., 0] == rgba[..., 1]).all() and (rgba[..., 1] == rgba[..., 2]).all()
    pixels = rgba[..., 0]
    assert np.array_equal(pixels, strip_frame(page_data(page)["runs"][run], walk, j, s, i)), (run, walk, j, s, i)
    assert same_frame(pixels, expected_frame(study, run, walk, j, s, i)), (run, walk, j, s, i)
    return pixels


def rect(browser: Chromium, slot: int, j: int, what: str) -> dict:
    return browser.js(f"(() => {{ const r = {ROW.format(slot=slot, j=j, what=what)}.getBoundingClientRect(); "
                      "return {x: r.x, y: r.y, w: r.width, h: r.height}; })()")


def test_sliders_move_with_mouse_and_keys_and_show_the_expected_frame(study, page, chromium):
    a, b = "oracle-0000000000", "sefa-0000000001"
    chromium.send("Page.navigate", url=f"{page.as_uri()}#g=0&w=norm&s=0&a={a}&b={b}")
    start = shown(chromium, study, page, 0, 0, a, "norm", 0, 2)  # the middle of the 5-step grid: the start image
    slider = rect(chromium, 0, 0, ".step-slider")
    chromium.click(slider["x"] + slider["w"] - 2, slider["y"] + slider["h"] / 2)  # mouse: to the right end
    moved = shown(chromium, study, page, 0, 0, a, "norm", 0, 4)
    assert (moved != start).mean() > 0.01  # the sprite moved
    shown(chromium, study, page, 1, 0, b, "norm", 0, 4)  # the linked panel follows, on the same start latent
    chromium.key("ArrowLeft", "ArrowLeft", 37)  # keyboard: the focused slider one step back
    shown(chromium, study, page, 0, 0, a, "norm", 0, 3)
    chromium.key("]", "BracketRight", 221, text="]")  # the next start sample, in every row
    shown(chromium, study, page, 0, 0, a, "norm", 1, 3)
    shown(chromium, study, page, 1, 0, b, "norm", 1, 3)
    chromium.key("ArrowDown", "ArrowDown", 40)  # the next direction: its slider takes the keys
    chromium.key("ArrowRight", "ArrowRight", 39)
    shown(chromium, study, page, 0, 1, a, "norm", 1, 3)
    film = rect(chromium, 0, 2, ".film img")
    chromium.click(film["x"] + 1, film["y"] + film["h"] / 2)  # mouse: the first frame of a strip
    shown(chromium, study, page, 0, 2, a, "norm", 1, 0)
    text = chromium.js("document.body.innerText")
    assert a in text and b in text and "planted factor matched" in text and "top factors" in text
    assert not chromium.errors()


def test_masked_walk_and_the_other_generator_in_chromium(study, page, chromium):
    run, dcgan = "oracle-0000000009", "sefa-0000000005"
    chromium.send("Page.navigate", url=f"{page.as_uri()}#g=0&w=masked&s=2&a={run}&b=")
    shown(chromium, study, page, 0, 1, run, "masked", 2, 2)
    slider = rect(chromium, 0, 1, ".step-slider")
    chromium.click(slider["x"] + 2, slider["y"] + slider["h"] / 2)
    shown(chromium, study, page, 0, 1, run, "masked", 2, 0)
    assert chromium.js("document.querySelectorAll('.panel').length") == 1 and "channel group" in chromium.js(
        "document.body.innerText")
    chromium.key("g", "KeyG", 71, text="g")  # the next generator: the DCGAN's one run, under the norm walk
    shown(chromium, study, page, 0, 0, dcgan, "norm", 0, 2)
    assert not chromium.errors()
