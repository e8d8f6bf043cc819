"""Config loading, validation messages, sweep expansion, run ids, the runs table and each job's arguments
(dplase.config)."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dplase.config import (
    PATHS,
    ConfigError,
    check_config,
    expand_runs,
    load_config,
    make_run_id,
    merge_configs,
    prepare,
    read_yaml,
    validate_config,
)
from dplase.results import runs_table, write_runs_table

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ["config/config.yaml", "config/test.yaml", "config/ablation_density.yaml", "config/paper.yaml",
           "config/planted.yaml", "config/planted_mixed.yaml"]


def base_config(**overrides) -> dict:
    """A small valid config (defaults filled by validation)."""
    config = {
        "datasets": {"shapes": {"image_size": 32}},
        "models": {"dcgan": {"train": {"z_dim": 8, "steps": 5}}},
        "sweeps": [{"models": ["dcgan"], "datasets": ["shapes"], "methods": ["sefa", "random"],
                    "params": {"k": 3}}],
    }
    config.update(overrides)
    return config


def checked(config: dict) -> dict:
    validate_config(config)
    check_config(config)
    return config


# ---------------------------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_validate_and_expand(name):
    paths = [ROOT / "config/config.yaml"] + ([ROOT / name] if name != "config/config.yaml" else [])
    config = load_config(*paths)
    runs = expand_runs(config)
    assert runs, name
    assert len({r.run_id for r in runs}) == len(runs)


def test_default_config_has_every_method_and_the_three_dplase_walks():
    runs = expand_runs(load_config(ROOT / "config/config.yaml"))
    gan = [r for r in runs if r.model == "dcgan"]
    assert {r.method for r in gan} == {"dplase", "sefa", "ganspace", "voynov", "random", "coordinate"}
    assert sorted(r.walk for r in gan if r.method == "dplase") == ["learned", "linear", "norm"]
    assert {r.seed for r in runs} == {0}
    # the planted study: every method and the oracle on 3 planted generators, with its own protocol
    planted = [r for r in runs if r.model == "planted"]
    assert {r.method for r in planted} == {r.method for r in gan} | {"oracle"}
    assert sorted(r.model_seed for r in planted if r.method == "sefa") == [0, 1, 2]
    assert all({"recovery", "exact"} <= set(r.evaluation["metrics"]) for r in planted)


@pytest.mark.parametrize(("overlay", "model", "level"), [("planted", "planted", "aligned"),
                                                         ("planted_mixed", "planted_mixed", "mixed")])
def test_planted_overlays_are_10_generator_seeds_x_every_method(overlay, model, level):
    config = load_config(ROOT / "config/config.yaml", ROOT / f"config/{overlay}.yaml")
    runs = expand_runs(config)
    assert {r.model for r in runs} == {model} and config["models"][model]["planted"]["level"] == level
    assert {r.method for r in runs} == {"oracle", "dplase", "sefa", "ganspace", "voynov", "random", "coordinate"}
    assert len(runs) == 7 * 10 and {r.model_seed for r in runs} == set(range(10))


def test_ablation_config_is_walks_x_lambda_x_zeta_x_3_seeds_x_2_datasets():
    config = load_config(ROOT / "config/config.yaml", ROOT / "config/ablation_density.yaml")
    runs = expand_runs(config)
    grid = config["sweeps"][0]["grid"]
    assert len(runs) == len(grid["walk"]) * len(grid["lambda"]) * len(grid["zeta"]) * 3 * 2
    assert {r.walk for r in runs} == {"linear", "norm", "learned"}
    assert {r.seed for r in runs} == {0, 1, 2} and len({r.dataset for r in runs}) == 2


def test_merge_follows_snakemake_semantics():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": [1], "c": 3}
    merged = merge_configs(base, {"a": {"y": [9]}, "b": [2, 3]})
    assert merged == {"a": {"x": 1, "y": [9]}, "b": [2, 3], "c": 3}
    assert base["a"]["y"] == [1, 2]  # input untouched


# ------------------------------------------------------------------------------------------------- defaults


def test_validation_fills_every_default_from_the_schema():
    config = checked({"sweeps": [{"methods": ["sefa"]}]})
    assert config["device"] == "cpu"
    assert config["datasets"] == {"shapes": {"name": None, "image_size": 64, "options": {}}}
    assert config["models"]["dcgan"]["train"]["z_dim"] == 16
    assert config["evaluation"]["metrics"] == ["attr", "disent", "fid", "density", "rca"]
    assert config["sweeps"][0]["seeds"] == [0] and config["sweeps"][0]["grid"] == {}


def test_schema_gan_recipe_defaults_are_gan_config_defaults():
    from dplase.training.gan import GanConfig

    schema = read_yaml(ROOT / "workflow/schemas/config.schema.yaml")
    train = schema["properties"]["models"]["additionalProperties"]["properties"]["train"]["properties"]
    defaults = GanConfig()
    assert {name: prop["default"] for name, prop in train.items()} == {name: getattr(defaults, name) for name in train}


def test_every_schema_property_has_a_description_and_a_default():
    schema = read_yaml(ROOT / "workflow/schemas/config.schema.yaml")
    missing = []

    def visit(node, path):
        for name, prop in node.get("properties", {}).items():
            key = f"{path}.{name}" if path else name
            if "description" not in prop:
                missing.append(f"{key}: description")
            # required keys (sweep methods, include entries' model/dataset/method) have no default by design
            if "default" not in prop and name not in node.get("required", []):
                missing.append(f"{key}: default")
            visit(prop, key)
        for sub in ("items", "additionalProperties"):
            if isinstance(node.get(sub), dict):
                visit(node[sub], path + "[]")

    visit(schema, "")
    assert not missing


# ------------------------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    ("mutate", "key", "message"),
    [
        (lambda c: c["models"]["dcgan"]["train"].update(steps=-5), "models.dcgan.train.steps", "minimum of 0"),
        (lambda c: c["sweeps"][0]["params"].update(steps=-1), "sweeps[0].params.steps", "steps must be >= 0"),
        (lambda c: c["sweeps"][0].update(models=["dcgan", "biggan"]), "sweeps[0].models[1]", "unknown model 'biggan'"),
        (lambda c: c["sweeps"][0].update(datasets=["faces"]), "sweeps[0].datasets[0]", "unknown dataset 'faces'"),
        (lambda c: c["sweeps"][0].update(methods=["sefa", "pca"]), "sweeps[0].methods[1]", "unknown method 'pca'"),
        (lambda c: c.update(evaluation={"metrics": ["fid", "lpips"]}), "evaluation.metrics[1]",
         "unknown metric 'lpips'"),
        (lambda c: c["sweeps"][0]["params"].update(k=9), "sweeps[0].params.k", "K=9 exceeds z_dim=8"),
        (lambda c: c["sweeps"][0].update(grid={"k": [2, 12]}), "sweeps[0].grid.k", "K=12 exceeds z_dim=8"),
        (lambda c: c["models"]["dcgan"].update(checkpoint="nowhere/g.pt"), "models.dcgan.checkpoint",
         "does not exist"),
        (lambda c: c["datasets"]["shapes"].update(options={"path": "/no/such/folder"}),
         "datasets.shapes.options.path", "does not exist"),
        (lambda c: c.update(evaluation={"inception_weights": "/no/inception.pt"}), "evaluation.inception_weights",
         "does not exist"),
        (lambda c: c["datasets"].update(faces={}), "datasets.faces", "unknown dataset 'faces'"),
        (lambda c: c.update(devcie="cuda"), "devcie", "unknown key"),
        (lambda c: c["models"]["dcgan"]["train"].update(z_dimm=4), "models.dcgan.train.z_dimm",
         "not a GAN training option"),
        (lambda c: c["sweeps"][0].update(grid={"walk": ["linear", "sideways"]}), "sweeps[0].grid.walk",
         "unknown walk 'sideways'"),
        (lambda c: c["sweeps"][0].update(grid={"walk": ["learned"]}), "sweeps[0].grid.walk",
         "walk 'learned' needs a learned density correction"),
        (lambda c: c["sweeps"][0]["params"].update(shift_scale=6.0), "sweeps[0].params.shift_scale",
         "method 'sefa' has no option 'shift_scale'"),
        (lambda c: c.update(evaluation={"options": {"n_stepz": 3}}), "evaluation.options.n_stepz",
         "unknown option"),
        (lambda c: c["datasets"]["shapes"].update(image_size=48), "datasets.shapes.image_size", "is not one of"),
        (lambda c: c.update(include=[{"model": "dcgan", "dataset": "shapes", "method": "sefa",
                                      "params": {"k": 40}}]), "include[0].params.k", "K=40 exceeds"),
    ],
)
def test_bad_config_is_rejected_with_a_message_naming_the_key(mutate, key, message):
    config = base_config()
    mutate(config)
    with pytest.raises(ConfigError, match=message) as info:
        checked(config)
    assert info.value.key == key
    assert str(info.value).startswith(f"config key '{key}'")


def test_learned_walk_of_a_baseline_is_fine_once_excluded():
    config = base_config(exclude=[{"method": "sefa", "walk": "learned"}, {"method": "random", "walk": "learned"}])
    config["sweeps"][0]["grid"] = {"walk": ["linear", "learned"]}
    runs = expand_runs(checked(config))
    assert sorted((r.method, r.walk) for r in runs) == [("random", "linear"), ("sefa", "linear")]


# ------------------------------------------------------------------------------------------ expansion, ids


def test_expansion_is_the_full_product_minus_exclusions_plus_inclusions():
    config = base_config(
        datasets={"shapes": {"image_size": 32}, "digits": {"image_size": 32}},
        models={"a": {"train": {"z_dim": 8}}, "b": {"train": {"z_dim": 8}}},
        exclude=[{"model": "b", "method": "random"}, {"k": 3, "seed": 1, "dataset": "digits"}],
        include=[{"model": "a", "dataset": "shapes", "method": "coordinate", "seed": 7, "params": {"k": 2}}],
    )
    config["sweeps"] = [{"methods": ["sefa", "random"], "seeds": [0, 1], "grid": {"k": [2, 3]}}]
    runs = expand_runs(checked(config))
    expected = set()
    for model, ds, method, seed, k in itertools.product("ab", ["shapes", "digits"], ["sefa", "random"], [0, 1],
                                                         [2, 3]):
        if (model == "b" and method == "random") or (k == 3 and seed == 1 and ds == "digits"):
            continue
        expected.add((model, ds, method, seed, k))
    expected.add(("a", "shapes", "coordinate", 7, 2))
    assert {(r.model, r.dataset, r.method, r.seed, r.params["k"]) for r in runs} == expected
    assert len(runs) == len(expected)


def test_run_ids_are_stable_short_and_parameter_hashes():
    rid = make_run_id("dcgan", "shapes", "dplase", 0, {"k": 6, "walk": "norm", "lambda": 1.0})
    # a fixed value: changing the hashing would silently move every result path
    assert rid == make_run_id("dcgan", "shapes", "dplase", 0, {"walk": "norm", "lambda": 1, "k": 6.0})
    assert rid.startswith("dplase-") and len(rid) == len("dplase-") + 10
    others = {
        make_run_id("dcgan", "shapes", "dplase", 1, {"k": 6, "walk": "norm", "lambda": 1.0}),
        make_run_id("dcgan", "digits", "dplase", 0, {"k": 6, "walk": "norm", "lambda": 1.0}),
        make_run_id("dcgan", "shapes", "dplase", 0, {"k": 6, "walk": "norm", "lambda": 1.5}),
        make_run_id("other", "shapes", "dplase", 0, {"k": 6, "walk": "norm", "lambda": 1.0}),
    }
    assert rid not in others and len(others) == 4


def test_run_id_does_not_depend_on_the_config_file_layout():
    a = base_config()
    b = copy.deepcopy(a)
    b["sweeps"] = [{"methods": ["random"], "grid": {"k": [3]}}, {"methods": ["sefa"], "params": {"k": 3},
                                                                 "name": "other"}]
    ids_a = {(r.method, r.run_id) for r in expand_runs(checked(a))}
    ids_b = {(r.method, r.run_id) for r in expand_runs(checked(b))}
    assert ids_a == ids_b


def test_duplicate_runs_collapse_to_one():
    config = base_config()
    config["sweeps"].append(copy.deepcopy(config["sweeps"][0]))
    assert len(expand_runs(checked(config))) == 2


def test_runs_table_round_trips_through_parquet(tmp_path):
    config = checked(base_config())
    config["sweeps"][0]["grid"] = {"lambda": [0.5], "zeta": [2.0]}
    config["sweeps"][0]["methods"] = ["dplase"]
    runs = expand_runs(config)
    path = write_runs_table([r.to_row() for r in runs], tmp_path / "runs.parquet")
    table = pd.read_parquet(path)
    assert list(table["run_id"]) == [r.run_id for r in runs]
    row = table.iloc[0]
    # no walk in the config: the method's default (DP-LaSE: norm)
    assert (row["method"], row["k"], row["lambda"], row["zeta"], row["walk"]) == ("dplase", 3, 0.5, 2.0, "norm")
    assert pd.isna(row["layer"])
    assert yaml.safe_load(row["params"]) == {"k": 3, "lambda": 0.5, "zeta": 2}
    assert runs_table([]).empty


def test_sweep_paths_and_job_parameters():
    sweep = prepare(checked(base_config()))
    run = sweep.runs[0]
    paths = {**sweep.job_inputs("evaluate_walks", run.run_id), **sweep.job_outputs("discover_directions", run.run_id)}
    assert paths["out"] == f"results/runs/{run.run_id}/directions.pt"
    assert paths["generator"] == "results/" + PATHS["generator"].format(dataset="shapes", model="dcgan", model_seed=0)
    assert sweep.trained_generators() == [("dcgan", "shapes", 0)] == sweep.job_keys("train_gan")
    job = sweep.job_kwargs("train_gan", ("dcgan", "shapes", 0))
    gan = job["options"]
    assert (job["family"], gan["dataset"], gan["image_size"], gan["dataset_options"]) == ("dcgan", "shapes", 32, {})
    assert gan["z_dim"] == 8
    discover = sweep.job_kwargs("discover_directions", run.run_id)
    assert (discover["method"], discover["config"], discover["seed"]) == (run.method, run.params, run.seed)
    assert discover["labels"]["run_id"] == run.run_id
    with pytest.raises(KeyError, match="not part of this config"):
        sweep.run("sefa-0000000000")


def test_load_config_reports_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_every_stage_job_gets_exactly_its_function_arguments():
    """For every stage of the table and every job of the test config, the files the rules pass plus
    `Sweep.job_kwargs` bind to the job function's signature (no config names leak into dplase.jobs)."""
    import inspect

    from dplase.stages import STAGES, job_arguments

    sweep = prepare(load_config(ROOT / "config/config.yaml", ROOT / "config/test.yaml"))
    for stage in STAGES:
        keys = sweep.job_keys(stage)
        assert keys, stage
        function = STAGES.load(stage)
        for key in keys:
            files = {**sweep.job_inputs(stage, key), **sweep.job_outputs(stage, key)}
            arguments = job_arguments(stage, files, sweep.job_kwargs(stage, key))
            inspect.signature(function).bind(**arguments)  # raises TypeError on a missing or foreign argument
    discover = sweep.job_kwargs("discover_directions", next(r.run_id for r in sweep.runs if r.method == "dplase"))
    assert discover["config"]["walk"] == "learned" and "lambda" not in discover["config"]


def test_config_spellings_become_config_class_fields():
    config = checked(base_config())
    config["sweeps"][0].update(methods=["dplase"], params={"k": 3, "lambda": 0.5})
    sweep = prepare(config)
    kwargs = sweep.job_kwargs("discover_directions", sweep.runs[0].run_id)["config"]
    assert kwargs == {"k": 3, "lam": 0.5}
    assert sweep.runs[0].to_row()["lambda"] == 0.5


def test_replicates_get_their_own_evaluation_draws_and_methods_of_one_replicate_share_them():
    """A replicate is (generator seed, run seed): its evaluation seed differs from every other replicate's and is
    the same for every method in it (paired comparisons); replicate (0, 0) keeps evaluation.seed itself."""
    config = base_config()
    config["models"]["dcgan"]["seeds"] = [0, 1]
    config["sweeps"][0]["seeds"] = [0, 1, 2]
    config["evaluation"] = {"seed": 5}
    sweep = prepare(checked(config))
    seeds = {}
    for run in sweep.runs:
        seeds.setdefault((run.model_seed, run.seed), set()).add(
            sweep.job_kwargs("evaluate_walks", run.run_id)["evaluation"]["seed"])
    assert len(seeds) == 6 and all(len(s) == 1 for s in seeds.values())  # one seed per replicate, all methods
    assert len({next(iter(s)) for s in seeds.values()}) == 6  # independent replicates
    assert seeds[(0, 0)] == {5}
    assert prepare(checked(config)).job_kwargs("evaluate_walks", sweep.runs[3].run_id) == \
        sweep.job_kwargs("evaluate_walks", sweep.runs[3].run_id)  # the same config, the same draws


def test_replicate_seed_is_the_documented_formula_and_refuses_negative_seeds():
    from dplase.seeds import MODEL_SEED_STRIDE, RUN_SEED_STRIDE, replicate_seed

    assert replicate_seed(3, 2, 1) == 3 + 2 * MODEL_SEED_STRIDE + RUN_SEED_STRIDE
    # the evaluation adds offsets 0..7 to its seed: replicates never share a stream
    streams = {replicate_seed(0, m, r) + offset for m in range(10) for r in range(10) for offset in range(8)}
    assert len(streams) == 10 * 10 * 8
    with pytest.raises(ValueError, match=">= 0"):
        replicate_seed(0, -1, 0)
