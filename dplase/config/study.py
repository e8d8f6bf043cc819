"""`Sweep`: a validated config and its runs, with each job's files and arguments.

Both launch routes ask a Sweep the same questions for every stage of `dplase.stages.STAGES`: which jobs
(`job_keys`), which files each reads and writes (`job_inputs`, `job_outputs`, by the path scheme), and its
arguments (`job_kwargs`), already in the job function's own names (method options as config-class fields,
evaluation options as EvalConfig fields, ...), so `dplase.jobs` never imports config code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from dplase.config.checks import check_config
from dplase.config.loading import read_configs, validate_config
from dplase.config.paths import PATHS, result_path
from dplase.config.registries import is_imported, is_planted
from dplase.config.runs import Run, expand_runs
from dplase.seeds import replicate_seed
from dplase.stages import STAGES

#: a job of a stage: a run id, a (model, dataset, model seed) generator, a dataset id, or None (the whole study)
JobKey = str | tuple[str, str, int] | None


@dataclass
class Sweep:
    """A validated config and its runs, with the lookups the workflow's input functions need."""

    config: dict[str, Any]
    runs: list[Run]
    root: str = "results"
    by_id: dict[str, Run] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_id = {run.run_id: run for run in self.runs}

    def run(self, run_id: str) -> Run:
        try:
            return self.by_id[run_id]
        except KeyError:
            raise KeyError(f"run id '{run_id}' is not part of this config's sweep") from None

    def path(self, name: str, **fields: Any) -> str:
        """A result path from `PATHS` under the results root."""
        return result_path(self.root, name, **fields)

    def generator_path(self, model: str, dataset: str, model_seed: int) -> str:
        """The generator a run uses: the model's pretrained checkpoint, or the one the workflow trains (or
        plants) for this seed."""
        entry = self.config["models"][model]
        if entry.get("checkpoint") and not is_imported(entry):
            return entry["checkpoint"]
        return self.path("generator", model=model, dataset=dataset, model_seed=model_seed)

    def run_paths(self, run: Run | str) -> dict[str, str]:
        """Every file of one run by path key (its generator and predictor included)."""
        run = self.run(run) if isinstance(run, str) else run
        fields = {"run_id": run.run_id, "model": run.model, "dataset": run.dataset, "model_seed": run.model_seed}
        names = ("directions", "losses", "run_metrics", "traversal", "generator", "predictor")
        return {name: self.file(name, **fields) for name in names}

    def traversal_runs(self) -> list[Run]:
        """Runs that get a traversal grid (all, or those whose seed and generator seed are in the config's
        traversal.seeds and traversal.model_seeds)."""
        seeds, model_seeds = self.config["traversal"].get("seeds"), self.config["traversal"].get("model_seeds")
        return [r for r in self.runs if (seeds is None or r.seed in seeds)
                and (model_seeds is None or r.model_seed in model_seeds)]

    def trained_generators(self) -> list[tuple[str, str, int]]:
        """(model, dataset, model seed) of each generator the workflow trains or plants, in run order."""
        models = self.config["models"]
        keys = {(r.model, r.dataset, r.model_seed): None for r in self.runs
                if not models[r.model].get("checkpoint") or is_imported(models[r.model])}
        return list(keys)

    def datasets(self) -> list[str]:
        """Datasets the runs use (each needs a factor predictor)."""
        return list({r.dataset: None for r in self.runs})

    # ------------------------------------------------------------------------------------ jobs of a stage

    def job_keys(self, stage: str) -> list[JobKey]:
        """Every job of ``stage``: what each one is about."""
        per = STAGES[stage]["per"]
        if per == "generator":
            return list(self.trained_generators())
        if per == "dataset":
            return list(self.datasets())
        if per == "run":
            runs = self.traversal_runs() if stage == "plot_traversals" else self.runs
            return [r.run_id for r in runs]
        return [None]

    def _fields(self, stage: str, key: JobKey) -> dict[str, Any]:
        per = STAGES[stage]["per"]
        if per == "generator":
            return dict(zip(("model", "dataset", "model_seed"), key, strict=True))
        if per == "dataset":
            return {"dataset": key}
        if per == "run":
            run = self.run(key)
            return {"run_id": run.run_id, "model": run.model, "dataset": run.dataset, "model_seed": run.model_seed}
        return {}

    def file(self, name: str, **fields: Any) -> str | list[str]:
        """The path ``name`` for a job's wildcards; a wildcard the job does not have makes it every such file of
        the study (the runs' files, or the trained generators')."""
        template = PATHS[name]
        if name == "generator" and "model" in fields:
            return self.generator_path(fields["model"], fields["dataset"], fields["model_seed"])
        if "{run_id}" in template and "run_id" not in fields:
            return [self.path(name, run_id=r.run_id) for r in self.runs]
        if "{model}" in template and "model" not in fields:
            return [self.path(name, model=m, dataset=d, model_seed=s) for m, d, s in self.trained_generators()]
        used = {k: v for k, v in fields.items() if "{" + k + "}" in template}
        return self.path(name, **used)

    def job_inputs(self, stage: str, key: JobKey) -> dict[str, str | list[str]]:
        """Input name -> path(s) of one job."""
        fields = self._fields(stage, key)
        return {name: self.file(path_key, **fields) for name, path_key in STAGES[stage]["inputs"].items()}

    def job_outputs(self, stage: str, key: JobKey, side: bool = True) -> dict[str, str]:
        """Output name -> path of one job (``side``: with the files the job writes beside its outputs)."""
        info = STAGES[stage]
        outputs = {**info["outputs"], **(info.get("side_outputs", {}) if side else {})}
        fields = self._fields(stage, key)
        return {name: self.file(path_key, **fields) for name, path_key in outputs.items()}

    def job_kwargs(self, stage: str, key: JobKey) -> dict[str, Any]:
        """The JSON-able keyword arguments of one job besides its input and output paths."""
        return getattr(self, f"_{stage}_kwargs")(key)

    def _train_gan_kwargs(self, key: tuple[str, str, int]) -> dict[str, Any]:
        model, dataset, model_seed = key
        data, entry = self.dataset_spec(dataset), self.config["models"][model]
        if is_imported(entry):
            options = {"path": entry["checkpoint"], "format": entry["format"], "options": entry["import_options"],
                       "dataset": data["name"]}
            return {"family": "import", "options": options, "name": model, "device": self.config["device"]}
        if is_planted(entry):
            options = {**entry["planted"], "seed": int(model_seed), "image_size": data["image_size"]}
            return {"family": "planted", "options": options, "name": model, "device": self.config["device"]}
        gan = {**entry["train"], "seed": int(model_seed), "dataset": data["name"], "image_size": data["image_size"],
               "dataset_options": data["options"], "checkpoint_every": int(self.config["checkpoint_every"])}
        return {"family": entry["family"], "options": gan, "name": model, "device": self.config["device"]}

    def _train_factor_predictor_kwargs(self, dataset: str) -> dict[str, Any]:
        data, predictor = self.dataset_spec(dataset), self.config["predictor"]
        return {"dataset": {"name": data["name"], "image_size": data["image_size"], **data["options"]},
                "predictor": {"steps": int(predictor["steps"]), "seed": int(predictor["seed"]),
                              **predictor["options"]},
                "device": self.config["device"]}

    def _discover_directions_kwargs(self, run_id: str) -> dict[str, Any]:
        from dplase.methods import config_kwargs

        run = self.run(run_id)
        return {"method": run.method, "config": config_kwargs(run.method, run.params), "seed": run.seed,
                "labels": run.labels(), "device": self.config["device"],
                "checkpoint_every": int(self.config["checkpoint_every"])}

    def _evaluate_walks_kwargs(self, run_id: str) -> dict[str, Any]:
        run, evaluation = self.run(run_id), self.config["evaluation"]
        fields = {k: evaluation[k] for k in ("metrics", "n_samples", "seed", "extractor", "inception_weights")}
        fields["metrics"] = run.evaluation.get("metrics") or fields["metrics"]
        # every replicate its own draws, every method of a replicate the same ones (dplase.seeds)
        fields["seed"] = replicate_seed(int(evaluation["seed"]), run.model_seed, run.seed)
        options = {**evaluation["options"], **run.evaluation.get("options", {})}
        return {"evaluation": {**fields, **options}, "run_id": run.run_id, "model": run.model,
                "model_seed": run.model_seed, "dataset": run.dataset, "params": dict(run.params),
                "device": self.config["device"]}

    def _plot_traversals_kwargs(self, run_id: str) -> dict[str, Any]:
        traversal = self.config["traversal"]
        max_eps = traversal.get("max_eps")
        return {"n_steps": int(traversal["n_steps"]), "max_eps": None if max_eps is None else float(max_eps),
                "walk": self.run(run_id).walk, "device": "cpu", "masked_beside": True}

    def _write_runs_table_kwargs(self, key: None) -> dict[str, Any]:
        return {"rows": [run.to_row() for run in self.runs]}

    def _collect_metrics_kwargs(self, key: None) -> dict[str, Any]:
        return {}

    def _compare_methods_kwargs(self, key: None) -> dict[str, Any]:
        comparison = self.config["comparison"]
        return {"reference": str(comparison["reference"]), "seed": int(comparison["seed"])}

    def _explore_walks_kwargs(self, key: None) -> dict[str, Any]:
        explorer = self.config["explorer"]
        seeds, model_seeds = explorer.get("seeds"), explorer.get("model_seeds")
        runs = [r for r in self.runs if (seeds is None or r.seed in seeds)
                and (model_seeds is None or r.model_seed in model_seeds)]
        return {"runs": [{"run_id": r.run_id, "sweep": r.sweep, "directions": self.path("directions", run_id=r.run_id),
                          "generator": self.generator_path(r.model, r.dataset, r.model_seed)} for r in runs],
                "n_starts": int(explorer["n_starts"]), "image_size": int(explorer["image_size"]), "device": "cpu"}

    def _collect_losses_kwargs(self, key: None) -> dict[str, Any]:
        return {"generator_labels": [{"model": m, "dataset": d, "model_seed": s}
                                     for m, d, s in self.trained_generators()]}

    # ------------------------------------------------------------------------------------------ helpers

    def dataset_spec(self, dataset: str) -> dict[str, Any]:
        """``{"id", "name", "image_size", "options"}`` of a dataset id (registry name resolved)."""
        entry = self.config["datasets"][dataset]
        return {"id": dataset, "name": entry.get("name") or dataset, "image_size": int(entry["image_size"]),
                "options": dict(entry.get("options", {}))}

    def figure_options(self) -> dict[str, Any]:
        """Options of the figure functions."""
        return dict(self.config["figures"])

    def report_labels(self, run_id: str) -> dict[str, str]:
        """Labels of a run's entries in the HTML report."""
        run = self.run(run_id)
        labels = {"run": run.run_id, "dataset": run.dataset, "model": run.model, "walk": run.walk,
                  "seed": str(run.seed), "model seed": str(run.model_seed)}
        for key in ("k", "lambda", "zeta"):
            if key in run.params:
                labels[key] = str(run.params[key])
        return labels


def load_config(*paths: str | os.PathLike, schema_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read YAML config files (later ones merged onto earlier ones), validate them, fill defaults and check
    them: ``load_config("config/config.yaml", "config/test.yaml")`` is what
    ``snakemake --configfile config/test.yaml`` sees."""
    config = read_configs(*paths)
    validate_config(config, schema_path)
    check_config(config)
    return config


def prepare(config: dict[str, Any], root: str = "results", schema_path: str | os.PathLike | None = None) -> Sweep:
    """Validate (filling defaults in place), check and expand a config: what the workflow does at parse time."""
    validate_config(config, schema_path)
    check_config(config)
    return Sweep(config, expand_runs(config), root)
