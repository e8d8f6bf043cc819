"""The Snakemake workflow: config rejection before any job, the DAG, and an end-to-end run of the tiny config
(every expected file, every method x metric, valid figures, the HTML report in headless Chromium), plus a run
killed mid-way and resumed that must end with the same results as the uninterrupted one."""

from __future__ import annotations

import base64
import html as htmllib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dplase.config import load_config, prepare
from dplase.plots import FIGURES
from dplase.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
TEST_CONFIG = "config/test.yaml"
#: metric group -> one metric name it must produce
GROUP_METRICS = {"attr": "attr_top_share", "disent": "dci_disentanglement", "fid": "fid",
                 "density": "abs_logp_drift", "rca": "rca", "recovery": "recovery", "exact": "attr_exact_top_share"}


def make_workdir(path: Path) -> Path:
    """A copy of the workflow (Snakefile, workflow/, config/) to run in, so results/ lands in a temp folder."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", path / "Snakefile")
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return path


def snakemake(workdir: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # `dplase` for shell rules
    return subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


def job_total(output: str) -> int:
    """The 'total' line of Snakemake's job statistics (0 when nothing ran)."""
    match = re.search(r"^total\s+(\d+)\s*$", output, flags=re.MULTILINE)
    return int(match.group(1)) if match else 0


def expected_outputs(workdir: Path) -> list[Path]:
    """Every file the tiny config must produce (from the same sweep the workflow builds)."""
    sweep = prepare(load_config(ROOT / "config/config.yaml", ROOT / TEST_CONFIG))
    files = [sweep.path(name) for name in ("runs_table", "metrics", "all_losses", "comparison_md", "comparison",
                                           "comparison_paired", "comparison_html")]
    for model, dataset, model_seed in sweep.trained_generators():
        files += [sweep.path(n, model=model, dataset=dataset, model_seed=model_seed)
                  for n in ("generator", "generator_grid", "generator_losses")]
    files += [sweep.path("predictor", dataset=d) for d in sweep.datasets()]
    for run in sweep.runs:
        files += [sweep.path(n, run_id=run.run_id) for n in ("directions", "losses", "run_metrics", "traversal")]
        files += [f"results/logs/{rule}/{run.run_id}.log" for rule in ("discover_directions", "evaluate_walks",
                                                                        "plot_traversals")]
        files += [f"results/benchmarks/discover_directions/{run.run_id}.tsv"]
    files += [f"results/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]
    return [workdir / f for f in files]


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()


def results_without_timestamps(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path).drop(columns=["created_at"])
    keys = ["run_id", "metric", "walk", "direction", "step"]
    return frame.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------- fast: parse-time behaviour


def test_default_config_dag_has_every_rule(tmp_path):
    workdir = make_workdir(tmp_path / "wf")
    result = snakemake(workdir, "--dry-run", "--cores", "2")
    assert result.returncode == 0, result.stderr
    sweep = prepare(load_config(ROOT / "config/config.yaml"))
    runs, jobs = sweep.runs, {stage: len(sweep.job_keys(stage)) for stage in STAGES}
    assert jobs["train_gan"] == 4 and jobs["train_factor_predictor"] == 2  # the GAN, 3 planted; shapes, planted
    for rule, count in [("train_gan", 4), ("train_factor_predictor", 2), ("discover_directions", len(runs)),
                        ("evaluate_walks", len(runs)), ("plot_traversals", jobs["plot_traversals"]),
                        ("collect_metrics", 1), ("collect_losses", 1), ("write_runs_table", 1),
                        ("plot_figure", len(FIGURES))]:
        assert re.search(rf"^{rule}\s+{count}\s*$", result.stdout, flags=re.MULTILINE), rule
    # GPU-heavy rules carry the resources a cluster profile places them with
    assert re.search(r"rule train_gan:.*?resources: [^\n]*gpu=0", result.stdout, flags=re.DOTALL)
    assert not (workdir / "results").exists()


def test_bad_config_is_rejected_before_any_job_with_the_key(tmp_path):
    workdir = make_workdir(tmp_path / "wf")
    (workdir / "config/bad.yaml").write_text(
        "sweeps:\n  - methods: [sefa]\n    models: [dcgan]\n    datasets: [shapes]\n    params: {k: 40}\n")
    result = snakemake(workdir, "--cores", "1", "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    assert "config key 'sweeps[0].params.k': K=40 exceeds z_dim=16 of model 'dcgan'" in result.stderr
    assert not (workdir / "results").exists()  # nothing ran


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, float]:
    """The tiny config run once, uninterrupted."""
    workdir = make_workdir(tmp_path_factory.mktemp("e2e") / "wf")
    start = time.perf_counter()
    result = snakemake(workdir, "--cores", "2", "--configfile", TEST_CONFIG)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"tiny workflow: {job_total(result.stderr + result.stdout)} jobs in {elapsed:.1f} s")
    return workdir, result, elapsed


@pytest.mark.slow
def test_end_to_end_writes_every_expected_file(finished_run):
    workdir, _, _ = finished_run
    missing = [str(p.relative_to(workdir)) for p in expected_outputs(workdir) if not p.is_file()]
    assert not missing
    for png in [*workdir.glob("results/figures/*.png"), *workdir.glob("results/runs/*/traversal.png"),
                *workdir.glob("results/generators/*/*/*.png")]:
        assert_png(png)
    for pdf in workdir.glob("results/figures/*.pdf"):
        assert pdf.read_bytes()[:5] == b"%PDF-"


@pytest.mark.slow
def test_end_to_end_metrics_cover_every_method_and_metric(finished_run):
    workdir, _, _ = finished_run
    config = load_config(ROOT / "config/config.yaml", ROOT / TEST_CONFIG)
    sweep = prepare(config)
    metrics = pd.read_parquet(workdir / "results/metrics.parquet")
    runs = pd.read_parquet(workdir / "results/runs.parquet")
    assert set(runs["run_id"]) == set(metrics["run_id"]) == {r.run_id for r in sweep.runs}
    methods = {r.method for r in sweep.runs}
    assert methods == {"dplase", "sefa", "ganspace", "voynov", "random", "coordinate", "oracle"}
    for run in sweep.runs:  # every metric group with rows for this generator family is present
        present = set(metrics.loc[metrics["run_id"] == run.run_id, "metric"])
        planted = run.model == "planted"
        for group in run.evaluation.get("metrics") or config["evaluation"]["metrics"]:
            if planted or group not in ("recovery", "exact"):
                assert GROUP_METRICS[group] in present, (run.method, run.model, group)
        assert planted or not present & {"recovery", "attr_exact_top_share"}, run.method
    oracle = metrics.query("method == 'oracle' and metric == 'recovery'")["value"]
    assert list(oracle) == pytest.approx([1.0])
    # the learned walk is evaluated for the DP-LaSE run trained with it
    assert "learned" in set(metrics.loc[metrics["method"] == "dplase", "walk"])
    losses = pd.read_parquet(workdir / "results/losses.parquet")
    assert {"gan", "discovery"} <= set(losses["source"])
    assert {"dplase", "voynov"} <= set(losses.loc[losses["source"] == "discovery", "method"])


@pytest.mark.slow
def test_rerun_of_a_finished_workflow_does_nothing(finished_run):
    workdir, _, _ = finished_run
    result = snakemake(workdir, "--cores", "2", "--configfile", TEST_CONFIG, "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


#: injected into a copy of the report: visits each result category like a user (category -> subcategory ->
#: the "eye" button) and records the PNG images the page then displays
REPORT_PROBE = """<script>
(function () {
  const paths = PATHS;
  const seen = [];
  const link = (t) => [...document.querySelectorAll("a")].find((a) => a.textContent.trim() === t);
  const images = () => [...document.images].filter((i) => i.src.startsWith("data:image/png") && i.complete
    && i.naturalWidth > 0).map((i) => i.naturalWidth + "x" + i.naturalHeight + ":" + i.src.length);
  const later = (f) => setTimeout(f, 400);
  function follow(path, i, done) {
    if (i >= path.length) { done(true); return; }
    const a = link(path[i]);
    if (!a) { done(false); return; }
    a.click();
    later(() => follow(path, i + 1, done));
  }
  function visit(n) {
    if (n >= paths.length) {
      const out = document.createElement("pre");
      out.id = "dplase-probe"; out.style.display = "none"; out.textContent = JSON.stringify(seen);
      document.body.appendChild(out);
      return;
    }
    const back = link("Results");
    if (back) back.click();
    later(() => follow(paths[n], 0, (found) => {
      const eye = document.querySelector("a[iconname=eye]");
      if (eye) eye.click();
      const frames = () => [...document.querySelectorAll("iframe")].map((f) => f.src || "");
      later(() => {
        seen.push({path: paths[n], found: found && !!eye, images: images(), frames: frames()});
        visit(n + 1);
      });
    }));
  }
  window.addEventListener("load", () => later(() => visit(0)));
})();
</script>"""
REPORT_PATHS = [["0. Planted ground truth"], ["1. Generators", "dcgan"], ["2. Traversals", "dplase"],
                ["3. Realism along walks"], ["4. Density along walks"], ["5. Attribute change"],
                ["6. Density ablation"], ["7. Training curves"], ["8. Method comparison"]]
#: report entries that are HTML pages (shown in an iframe), not figures
REPORT_PAGES = {"8. Method comparison": "comparison.html"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_html_report_loads_in_headless_chromium_and_shows_the_figures(finished_run, tmp_path):
    workdir, _, _ = finished_run
    result = snakemake(workdir, "--configfile", TEST_CONFIG, "--report", "results/report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    report = workdir / "results/report.html"
    html = report.read_text()
    # the report is one self-contained file: every figure is embedded as a PNG data URI, with its caption
    embedded = re.findall(r"data:image/png;[^\"]*?base64,([A-Za-z0-9+/=]+)", html)
    assert len(embedded) >= len(FIGURES) + 2
    for payload in embedded:
        assert base64.b64decode(payload)[:8] == b"\x89PNG\r\n\x1a\n"
    for caption in ("Realism along walks: Fr", "Attribute change: for each method", "Ablation of the density",
                    "Traversal grid of run", "Training curves: every loss term"):
        assert caption in html, caption

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000"]
    probe = tmp_path / "report_probe.html"
    end = html.rfind("</body>")
    probe.write_text(html[:end] + REPORT_PROBE.replace("PATHS", json.dumps(REPORT_PATHS)) + html[end:])
    dom = subprocess.run([chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r'<pre id="dplase-probe"[^>]*>(.*?)</pre>', dom.stdout, flags=re.DOTALL)
    assert match, "the report's app did not render (no probe result in the DOM)"
    visits = json.loads(htmllib.unescape(match.group(1)))
    assert [v["path"] for v in visits] == REPORT_PATHS
    figures = [v for v in visits if v["path"][0] not in REPORT_PAGES]
    for visit in visits:
        assert visit["found"], f"report has no entry at {visit['path']}"
    for visit in figures:
        assert visit["images"], f"no figure displayed at {visit['path']}"
    # each category displayed its own figure
    assert len({v["images"][0] for v in figures}) == len(figures)
    for visit in visits:  # the comparison page is displayed, and it is the tables comparison.html holds
        if visit["path"][0] in REPORT_PAGES:
            name = REPORT_PAGES[visit["path"][0]]
            shown = [f for f in visit["frames"] if f.startswith("data:text/html") and f"filename={name}" in f]
            assert shown, f"{name} not displayed at {visit['path']}: frames {[f[:60] for f in visit['frames']]}"
            page = base64.b64decode(shown[0].split("base64,", 1)[1]).decode()
            assert page == (workdir / "results" / name).read_text() and "<table>" in page

    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1400,1000", f"--screenshot={shot}", probe.as_uri()],
                   capture_output=True, text=True, timeout=180, check=True)
    assert_png(shot)
    with Image.open(shot) as image:
        assert image.size == (1400, 1000)
        assert len(np.unique(np.asarray(image.convert("L")))) > 20  # a rendered page with a figure, not blank


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_finished_jobs_and_matches(finished_run, tmp_path):
    reference, first, _ = finished_run
    total_jobs = job_total(first.stdout + first.stderr)
    workdir = make_workdir(tmp_path / "wf")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "killed.log", "w")
    process = subprocess.Popen([SNAKEMAKE, "--cores", "2", "--configfile", TEST_CONFIG], cwd=workdir,
                               stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.time() + 1800
    try:
        # kill once some runs are discovered but evaluation has not finished everywhere
        while time.time() < deadline and process.poll() is None:
            if len(list(workdir.glob("results/runs/*/directions.pt"))) >= 2:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the workflow finished before it could be interrupted"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # snakemake and every job it started
        process.wait()
        log.close()
    incomplete = incomplete_outputs(workdir)
    # job outputs that were complete (a killed job's log is rewritten by its rerun, as it should be)
    finished = {p: p.stat().st_mtime_ns for p in expected_outputs(workdir)
                if p.is_file() and p not in incomplete and "logs" not in p.relative_to(workdir).parts}
    assert finished, "nothing had finished before the kill"

    assert snakemake(workdir, "--unlock").returncode == 0
    result = snakemake(workdir, "--cores", "2", "--configfile", TEST_CONFIG, "--rerun-incomplete")
    assert result.returncode == 0, result.stderr[-5000:]
    redone = [str(p.relative_to(workdir)) for p, mtime in finished.items() if p.stat().st_mtime_ns != mtime]
    assert not redone
    assert 0 < job_total(result.stdout + result.stderr) < total_jobs
    pd.testing.assert_frame_equal(results_without_timestamps(workdir / "results/metrics.parquet"),
                                  results_without_timestamps(reference / "results/metrics.parquet"))


def incomplete_outputs(workdir: Path) -> set[Path]:
    """Outputs Snakemake had marked as being written when it died (.snakemake/incomplete holds their names
    base64-encoded)."""
    marks = workdir / ".snakemake" / "incomplete"
    out = set()
    for mark in marks.rglob("*") if marks.exists() else []:
        if mark.is_file():
            try:
                out.add(workdir / base64.urlsafe_b64decode(mark.name).decode())
            except (ValueError, UnicodeDecodeError):
                continue
    return out
