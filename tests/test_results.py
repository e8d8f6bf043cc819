"""Results schema: round trip, atomic writes, mismatched-schema errors, collect."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from dplase import __version__
from dplase.results import (
    COLUMNS,
    RESULTS_SCHEMA,
    ResultsSchemaError,
    collect,
    make_rows,
    read_results,
    write_results,
)


def _frame(run: str = "r0", n: int = 3) -> pd.DataFrame:
    base = {"run_id": run, "model": "shapes-dcgan64", "dataset": "shapes", "method": "dplase",
            "walk": "norm", "params": {"lambda": 0.1, "k": 4}, "k": 4, "layer": "block0", "lambda": 0.1,
            "zeta": 10.0, "seed": 1}
    rows = [{"metric": "fid", "direction": None, "step": 1.0, "value": 12.5, "n_samples": 64,
             "extractor": "domain"}]
    rows += [{"metric": "attr_change.pos_x", "direction": j, "step": -3.0, "value": 0.1 * j, "n_samples": 8}
             for j in range(n - 1)]
    return make_rows(base, rows)


def test_schema_round_trip(tmp_path) -> None:
    frame = _frame()
    path = write_results(frame, tmp_path / "m.parquet")
    assert pq.read_schema(path).remove_metadata().equals(RESULTS_SCHEMA)
    back = read_results(path)
    assert list(back.columns) == list(COLUMNS)
    assert back["metric"].tolist() == frame["metric"].tolist()
    assert back["value"].tolist() == pytest.approx(frame["value"].tolist())
    assert pd.isna(back.loc[0, "direction"]) and back.loc[1, "direction"] == 0
    assert json.loads(back.loc[0, "params"]) == {"k": 4, "lambda": 0.1}
    assert back.loc[0, "package_version"] == __version__
    assert str(back["created_at"].dt.tz) == "UTC"


def test_write_is_atomic_under_a_crash(tmp_path, monkeypatch) -> None:
    path = tmp_path / "m.parquet"
    write_results(_frame("old"), path)
    before = path.read_bytes()

    def crash(table, where, **kwargs):
        with open(where, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise KeyboardInterrupt("simulated crash mid-write")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        write_results(_frame("new"), path)
    assert path.read_bytes() == before  # the old complete file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["m.parquet"]  # no temp file left behind


def test_mismatched_schema_names_file_and_fields(tmp_path) -> None:
    table = pa.table({"run_id": ["x"], "metric": ["fid"], "value": ["not a float"], "colour": [1]})
    bad = tmp_path / "foreign.parquet"
    pq.write_table(table, bad)
    with pytest.raises(ResultsSchemaError, match=r"foreign\.parquet: not a dplase results table \(missing model"
                       r".*unexpected colour; wrong type value \(string instead of double\)"):
        read_results(bad)
    good = write_results(_frame(), tmp_path / "good.parquet")
    with pytest.raises(ResultsSchemaError, match=r"foreign\.parquet"):
        collect([good, bad], tmp_path / "all.parquet")
    assert not (tmp_path / "all.parquet").exists()


def test_frames_with_unknown_columns_are_refused() -> None:
    with pytest.raises(ResultsSchemaError, match=r"unknown results column.*factor"):
        make_rows({"run_id": "r"}, [{"metric": "m", "value": 1.0, "factor": "x"}])
    with pytest.raises(ResultsSchemaError, match=r"missing .*metric"):
        write_results(pd.DataFrame({"run_id": ["r"]}), "/nonexistent/never.parquet")


def test_collect_concatenates_in_order(tmp_path) -> None:
    paths = [write_results(_frame(f"r{i}", n=i + 2), tmp_path / f"r{i}.parquet") for i in range(5)]
    out = collect(paths, tmp_path / "all" / "metrics.parquet")
    merged = read_results(out)
    assert len(merged) == sum(i + 2 for i in range(5))
    assert merged["run_id"].unique().tolist() == [f"r{i}" for i in range(5)]


def test_collect_cli_walks_folders(tmp_path) -> None:
    from dplase.cli import main

    for i in range(3):
        write_results(_frame(f"r{i}"), tmp_path / "runs" / f"m{i}" / "metrics.parquet")
    pq.write_table(pa.table({"step": [1], "term": ["loss"]}), tmp_path / "runs" / "m0" / "losses.parquet")
    out = tmp_path / "metrics.parquet"
    result = CliRunner().invoke(main, ["collect", str(tmp_path / "runs"), "--out", str(out)])
    assert result.exit_code == 2 and "losses.parquet: not a dplase results table" in result.output
    result = CliRunner().invoke(main, ["collect", str(tmp_path / "runs"), "--pattern", "metrics*.parquet",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "collected 3 files" in result.output
    assert len(read_results(out)) == 9
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["collect", str(empty), "--out", str(out)])
    assert result.exit_code == 2 and "no files matching '*.parquet' found" in result.output


def test_files_of_the_schema_before_extrapolated_and_note_still_read(tmp_path):
    from dplase.results import ADDED_COLUMNS, RESULTS_SCHEMA, read_results, to_table

    frame = make_rows({"run_id": "r1", "method": "sefa"}, [{"metric": "mig", "value": 0.5, "n_samples": 10}])
    old = to_table(frame).drop_columns(list(ADDED_COLUMNS))
    pq.write_table(old, tmp_path / "old.parquet")
    back = read_results(tmp_path / "old.parquet")
    assert list(back.columns) == RESULTS_SCHEMA.names and back["note"].isna().all()
    assert back["value"].tolist() == [0.5]
    foreign = old.drop_columns(["metric"])  # anything else missing is still refused, by name
    pq.write_table(foreign, tmp_path / "foreign.parquet")
    with pytest.raises(ResultsSchemaError, match="missing metric"):
        read_results(tmp_path / "foreign.parquet")
