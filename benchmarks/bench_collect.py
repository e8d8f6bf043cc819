"""Benchmark `dplase collect`: concatenate many small per-run results files (goal: 10,000 files in <= 10 s).

Usage: python benchmarks/bench_collect.py [--n-files 10000] [--rows 20] [--threads 8]
Writes the files into a temporary folder, times `dplase.results.collect`, checks the row count, prints JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from dplase.results import collect, make_rows, to_table


def make_files(folder: Path, n_files: int, rows: int) -> list[Path]:
    """Write ``n_files`` results files of ``rows`` rows each (plain pq.write_table: setup, not timed)."""
    paths = []
    for i in range(n_files):
        frame = make_rows(
            {"run_id": f"run{i}", "model": "shapes-dcgan64", "dataset": "shapes", "method": "random",
             "walk": "linear", "params": {"k": 10}, "k": 10, "seed": i},
            ({"metric": "fid", "direction": j % 10, "step": float(j), "value": float(i + j)} for j in range(rows)),
        )
        path = folder / f"r{i:05d}.parquet"
        pq.write_table(to_table(frame), path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-files", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        paths = make_files(folder, args.n_files, args.rows)
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = collect(paths, folder / "all.parquet", threads=args.threads)
        elapsed = time.perf_counter() - t0
        n_rows = pq.read_metadata(out).num_rows
        assert n_rows == args.n_files * args.rows, n_rows
    print(json.dumps({"n_files": args.n_files, "rows_per_file": args.rows, "threads": args.threads,
                      "setup_s": round(setup, 2), "collect_s": round(elapsed, 3), "rows": n_rows,
                      "files_per_s": round(args.n_files / elapsed)}))


if __name__ == "__main__":
    main()
