"""A foreign checkpoint through the user-facing routes: `dplase import`, and a config model with
``checkpoint`` + ``format`` that the workflow's train_gan stage imports into results/generators/."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dplase.cli import main
from dplase.config import ConfigError, load_config, prepare
from dplase.generators.importers import rosinality
from dplase.generators.importers.stylegan2_layout import Shape, standard_kernel
from dplase.generators.registry import generator_meta, load_generator
from dplase.stages import run_job

ROOT = Path(__file__).resolve().parents[1]
#: a small rosinality generator (32 px, z 12, w 16): widths 16, 16, 8, 4 fit channel_base 128, max 16
SMALL = Shape(size=32, z_dim=12, w_dim=16, n_mlp=2, channels=3, widths={4: 16, 8: 16, 16: 8, 32: 4})


def rosinality_file(path: Path, seed: int = 0) -> Path:
    """A rosinality checkpoint ({"g_ema", "latent_avg"}) of seeded random tensors in the exact layout."""
    gen = torch.Generator().manual_seed(seed)
    state = {key: standard_kernel().reshape(shape) if key.endswith("kernel") else torch.randn(shape, generator=gen)
             for key, shape in rosinality.layout(SMALL).items()}
    torch.save({"g_ema": state, "latent_avg": torch.randn(SMALL.w_dim, generator=gen)}, path)
    return path


def test_cli_import_writes_a_generator_and_its_grid(tmp_path):
    source = rosinality_file(tmp_path / "ffhq-small.pt")
    out = tmp_path / "g.pt"
    result = CliRunner().invoke(main, ["import", str(source), "--out", str(out), "--option", "truncation=0.7",
                                       "--space", "w"])
    assert result.exit_code == 0, result.output
    assert "family stylegan2" in result.output and "latent space w of dimension 16" in result.output
    assert out.with_suffix(".png").is_file()
    meta = generator_meta(out)
    assert meta["family"] == "stylegan2" and meta["source_format"] == "rosinality"
    adapter = load_generator(out)
    assert adapter.net.truncation == pytest.approx(0.7) and adapter.image_size == 32 and adapter.z_dim == 12


def test_cli_import_of_a_bad_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint at all")
    result = CliRunner().invoke(main, ["import", str(bad), "--out", str(tmp_path / "g.pt"), "--format", "rosinality"])
    assert result.exit_code == 2
    assert "broken.pt" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "g.pt").exists()


def _config(checkpoint: Path, **entry) -> dict:
    config = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "test.yaml")
    config = copy.deepcopy(config)
    config["models"]["ffhq"] = {"family": "stylegan2", "checkpoint": str(checkpoint), "format": "rosinality",
                                "import_options": {"truncation": 0.5}, **entry}
    config["sweeps"] = [{"name": "sefa on imported", "models": ["ffhq"], "datasets": ["shapes"],
                         "methods": ["sefa"], "seeds": [0], "grid": {"space": ["z", "w"]}, "params": {"k": 4}}]
    config["include"], config["exclude"] = [], []
    return config


def test_workflow_imports_a_foreign_checkpoint_once_into_results(tmp_path):
    source = rosinality_file(tmp_path / "ffhq.pt")
    sweep = prepare(_config(source), root=str(tmp_path / "results"))
    assert sweep.trained_generators() == [("ffhq", "shapes", 0)]  # produced by the train_gan stage
    key = ("ffhq", "shapes", 0)
    kwargs = sweep.job_kwargs("train_gan", key)
    assert kwargs["family"] == "import" and kwargs["options"]["format"] == "rosinality"
    files = {**sweep.job_inputs("train_gan", key), **sweep.job_outputs("train_gan", key)}
    run_job("train_gan", files, kwargs)
    out = Path(files["out"])
    assert out == tmp_path / "results" / "generators" / "shapes" / "ffhq" / "seed0.pt"
    assert generator_meta(out)["source_sha256"] and load_generator(out).net.truncation == pytest.approx(0.5)
    for run in sweep.runs:  # both spaces' runs read the imported file
        assert sweep.run_paths(run)["generator"] == str(out)
    assert {run.space for run in sweep.runs} == {"z", "w"}


@pytest.mark.parametrize("entry, key, message", [
    ({"format": "pickle"}, "models.ffhq.format", "unknown checkpoint format 'pickle'"),
    ({"family": "dcgan"}, "models.ffhq.family", "format 'rosinality' imports into family 'stylegan2'"),
])
def test_config_errors_name_the_key(tmp_path, entry, key, message):
    source = rosinality_file(tmp_path / "ffhq.pt")
    with pytest.raises(ConfigError) as err:
        prepare(_config(source, **entry), root=str(tmp_path / "results"))
    assert key in str(err.value) and message in str(err.value)
