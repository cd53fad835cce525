"""Evidently's DataDriftPreset on two Parquet files, run in a virtualenv of its own (benchmark-only).

Evidently 0.7.x does not import with pandas 3, the project's pandas, so it cannot run in `.venv`. `ensure_env()`
creates `.local/bench/evidently-venv` once (git-ignored) from the exact pins in `evidently-requirements.txt` beside
this file, and rebuilds it when that file changes. `run_evidently()` runs the preset in that environment in a
subprocess and returns its figures as a dict:

    from evidently_runner import ensure_env, run_evidently     # benchmarks/ is on sys.path for its scripts
    figures = run_evidently(".local/bench/ref.parquet", ".local/bench/cur.parquet", columns, categorical)

    .venv/bin/python benchmarks/evidently_runner.py --setup    # only create (or check) the environment

The subprocess (this file run by the environment's Python with `--child`) imports nothing of batchml: it reads the
two files with pandas 2 + pyarrow, maps the column types explicitly (`DataDefinition`), and times
`Report([DataDriftPreset(columns=...)], include_tests=True).run(current, reference)` with the wrapping of both
frames as Evidently `Dataset`s. Interpreter start, imports and Parquet reads are reported apart. Peak memory is the
subprocess's own VmHWM (/proc/self/status) over its whole run; its RSS right after loading both frames, and the
peak during the drift computation alone (VmHWM reset after loading), are reported beside it.

API used (Evidently 0.7.23, checked in its installed source): `evidently.Report`, `evidently.Dataset.from_pandas`,
`evidently.DataDefinition(numerical_columns=..., categorical_columns=...)`, `evidently.presets.DataDriftPreset`,
`Snapshot.dict()`. The preset yields one `DriftedColumnsCount` metric (value: count and share) and one `ValueDrift`
metric per column (value: the drift score; config: the stat test's name and threshold); with `include_tests=True`
each `ValueDrift` also carries a test whose status is FAIL when that column drifted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = Path(__file__).resolve().with_name("evidently-requirements.txt")
ENV_DIR = REPO / ".local" / "bench" / "evidently-venv"
STAMP = ".batchml-requirements.sha256"
EVIDENTLY_VERSION = "0.7.23"


def _python_of(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _wanted_stamp() -> str:
    """Hash of the pins and of the interpreter's minor version: the environment is rebuilt when either changes."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return digest.hexdigest()


def ensure_env(env_dir: Path = ENV_DIR, verbose: bool = True) -> Path:
    """Create Evidently's virtualenv once (exact pins of evidently-requirements.txt) and return its Python.

    A finished environment carries a stamp (the pins' hash), written last: an environment without the right stamp
    (never finished, or older pins) is deleted and built again. The first build downloads about 80 packages (a few
    minutes); later calls return at once.
    """
    python = _python_of(env_dir)
    stamp = env_dir / STAMP
    wanted = _wanted_stamp()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(f"the Evidently pins were resolved for Python 3.11; this is {sys.version.split()[0]}")
    if env_dir.exists():
        shutil.rmtree(env_dir)
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"creating Evidently's environment {env_dir} (pins: {REQUIREMENTS.name}; a few minutes, once) ...",
              flush=True)
    t0 = time.perf_counter()
    # `-m venv` from inside .venv builds on the same base interpreter (Python 3.11)
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # the child environment (no PYTHONPATH): with `PYTHONPATH=include`, pip saw batchml's egg-info there and
    # `pip check` failed on its requirements, which this environment must not have
    out = subprocess.run([*pip, "install", "--quiet", "-r", str(REQUIREMENTS)], capture_output=True, text=True,
                         env=_child_env())
    if out.returncode != 0:
        raise SystemExit(f"installing {REQUIREMENTS.name} into {env_dir} failed:\n{out.stdout}\n{out.stderr}")
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, env=_child_env())
    if check.returncode != 0:
        raise SystemExit(f"{env_dir}: inconsistent packages after install (pip check):\n{check.stdout}")
    versions = json.loads(subprocess.run([str(python), __file__, "--versions"], check=True, capture_output=True,
                                         text=True, env=_child_env()).stdout.strip().splitlines()[-1])
    if versions["evidently"] != EVIDENTLY_VERSION or int(versions["pandas"].split(".")[0]) >= 3:
        raise SystemExit(f"{env_dir}: expected evidently {EVIDENTLY_VERSION} with pandas < 3, got {versions}")
    stamp.write_text(wanted + "\n")
    if verbose:
        print(f"  ready in {time.perf_counter() - t0:.0f} s: {versions}", flush=True)
    return python


def _child_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["DO_NOT_TRACK"] = "1"  # Evidently's usage telemetry (only its UI service sends any): off, whatever runs
    return env


def run_evidently(reference_parquet, current_parquet, columns: list[str], categorical: list[str],
                  env_dir: Path = ENV_DIR, timeout: float | None = None) -> dict:
    """DataDriftPreset on `columns` of the two files (those in `categorical` typed categorical, the rest numerical),
    in Evidently's environment, in a fresh subprocess. Returns:

    - `drift_s` (the drift computation: `Dataset.from_pandas` of both frames + `Report.run`), split into
      `dataset_s` and `report_s`; `drift_cpu_s`; `import_s` and `load_s` (Parquet reads) apart; `process_s`, the
      subprocess's whole wall time seen from here (interpreter start, imports, reads, drift, result);
    - `peak_rss_mb` (VmHWM of the subprocess, whole run), `rss_after_load_mb` (VmRSS once both frames are loaded)
      and `drift_peak_rss_mb` (VmHWM reset after loading: the peak during the drift computation, data included);
    - `drifted_count`, `drifted_share` (from `DriftedColumnsCount`), `drifted_columns`;
    - `columns`: {column: {"score", "method", "threshold", "drifted"}} from each column's `ValueDrift`;
    - `versions` of evidently, pandas, numpy, scipy, pyarrow in that environment.
    """
    python = ensure_env(env_dir)
    unknown = sorted(set(categorical) - set(columns))
    if unknown:
        raise ValueError(f"categorical columns not in columns: {unknown}")
    with tempfile.TemporaryDirectory(prefix="evidently-run-") as tmp:
        out_file = Path(tmp) / "result.json"
        args = {"reference": str(Path(reference_parquet).resolve()), "current": str(Path(current_parquet).resolve()),
                "columns": list(columns), "categorical": list(categorical), "out": str(out_file)}
        t0 = time.perf_counter()
        proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--child", json.dumps(args)],
                              capture_output=True, text=True, env=_child_env(), timeout=timeout)
        process_s = time.perf_counter() - t0
        if proc.returncode != 0 or not out_file.exists():
            raise RuntimeError(f"Evidently's subprocess failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        result = json.loads(out_file.read_text())
    result["process_s"] = process_s
    return result


# Child side: runs under Evidently's environment (pandas 2); imports nothing of batchml --------------------------


def _proc_status_mb(field: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: 5 > /proc/self/clear_refs), so that the next phase's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _versions() -> dict:
    import evidently
    import numpy
    import pandas
    import pyarrow
    import scipy

    return {"evidently": evidently.__version__, "pandas": pandas.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "pyarrow": pyarrow.__version__,
            "python": sys.version.split()[0]}


def _child(args: dict) -> None:
    t0 = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    import_s = time.perf_counter() - t0
    columns, categorical = args["columns"], args["categorical"]
    t0 = time.perf_counter()
    reference = pd.read_parquet(args["reference"], columns=columns)
    current = pd.read_parquet(args["current"], columns=columns)
    load_s = time.perf_counter() - t0
    rss_after_load, load_peak = _proc_status_mb("VmRSS"), _proc_status_mb("VmHWM")
    reset = _reset_peak_rss()

    definition = DataDefinition(numerical_columns=[c for c in columns if c not in categorical],
                                categorical_columns=list(categorical))
    c0, t0 = time.process_time(), time.perf_counter()
    cur_ds = Dataset.from_pandas(current, data_definition=definition)
    ref_ds = Dataset.from_pandas(reference, data_definition=definition)
    t1 = time.perf_counter()
    snapshot = Report([DataDriftPreset(columns=columns)], include_tests=True).run(cur_ds, ref_ds)
    t2, c2 = time.perf_counter(), time.process_time()
    drift_peak = _proc_status_mb("VmHWM")

    out = snapshot.dict()
    per_column: dict[str, dict] = {}
    count = share = None
    for metric in out["metrics"]:
        kind = metric["config"]["type"]
        if kind.endswith(":DriftedColumnsCount"):
            count, share = metric["value"]["count"], metric["value"]["share"]
        elif kind.endswith(":ValueDrift"):
            cfg = metric["config"]
            per_column[cfg["column"]] = {"score": metric["value"], "method": cfg.get("method"),
                                         "threshold": cfg.get("threshold"), "drifted": None}
    for test in out["tests"]:
        params = (test.get("metric_config") or {}).get("params") or {}
        if params.get("type", "").endswith(":ValueDrift") and params.get("column") in per_column:
            per_column[params["column"]]["drifted"] = test["status"] == "FAIL"
    drifted = sorted(c for c, v in per_column.items() if v["drifted"])
    if count is not None and int(count) != len(drifted):  # the two computations of the preset must agree
        print(f"warning: DriftedColumnsCount says {count}, the per-column tests {len(drifted)}", file=sys.stderr)
    result = {
        "rows_reference": int(len(reference)), "rows_current": int(len(current)), "import_s": import_s,
        "load_s": load_s, "dataset_s": t1 - t0, "report_s": t2 - t1, "drift_s": t2 - t0, "drift_cpu_s": c2 - c0,
        "rss_after_load_mb": rss_after_load, "peak_rss_mb": max(load_peak, drift_peak),
        "drift_peak_rss_mb": drift_peak if reset else None,
        "drifted_count": None if count is None else int(count), "drifted_share": share,
        "drifted_columns": drifted, "columns": per_column, "versions": _versions(),
    }
    Path(args["out"]).write_text(json.dumps(result, default=float))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(json.loads(sys.argv[2]))
    elif sys.argv[1:] == ["--versions"]:
        print(json.dumps(_versions()))
    elif sys.argv[1:] == ["--setup"]:
        print(ensure_env())
    else:
        raise SystemExit(__doc__)
