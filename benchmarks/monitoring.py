"""Drift-monitoring benchmark: our drift statistics (batchml.drift) against Evidently's DataDriftPreset on the same frames.

    .venv/bin/python benchmarks/monitoring.py                      # 100,000 x 50 and 1,000,000 x 100 (Evidently: tens of minutes)
    .venv/bin/python benchmarks/monitoring.py --quick              # 20,000 x 20, under a minute once Evidently's env exists
    .venv/bin/python benchmarks/monitoring.py --sizes 1000000x100 [--categorical 3] [--runs 1] [--skip-evidently]

For each size ROWSxFEATURES a seeded synthetic reference frame and current frame (ROWS rows each; FEATURES numeric
features of five shapes, `--categorical` string columns, and a model score) are written to Parquet under
.local/bench/ (reused when present). The current frame carries a known drift: for numeric feature j, j % 10 == 0 a
strong mean shift (0.75 sd of its latent normal), 1 a wider spread (sd x 2), 2 a moderate shift (0.3 sd), 3 a
slight shift (0.05 sd), otherwise none; categorical column 0 changes its shares, 1 is stable, 2 gains a category the
reference never had; the score follows the strongly shifted feature 0. Then, each in a fresh subprocess so that its
peak RSS (VmHWM) is its own:

- ours, once: read the reference and build the reference profile (`build_profile`), saved as the pipeline saves it;
- ours, per run: load the saved profile and read the current frame, then `feature_drift` (PSI and KS per numeric
  feature, PSI, chi-square and unseen share per categorical one, the score's PSI) with the default thresholds of
  `MonitoringSpec`;
- Evidently 0.7.23 (its own virtualenv, see evidently_runner.py): read both frames, then DataDriftPreset with
  explicit column types and its default stat tests.

Times are the computation alone; reading files (and imports) are reported apart. Agreement compares our alert set
(PSI, KS or unseen-share alert; the score by its PSI) with Evidently's drifted columns, and both with the known
drift: the tests differ (PSI on reference deciles and KS against a 5,000-row sample vs Wasserstein distance and
Jensen-Shannon distance on all rows), so the sets are reported as they are, not forced to agree.
Figures go to benchmarks/results/monitoring.json (--quick: .local/bench/monitoring_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

# Our drift statistics: imported here and nowhere else in this benchmark (when they move, change this line only;
# they were in batchml.monitoring until the split into batchml.drift).
from batchml.drift import build_profile, feature_drift, load_reference, save_reference
from batchml.specs import UseCaseSpec

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "monitoring.json"
QUICK_RESULTS = REPO / ".local" / "bench" / "monitoring_quick.json"
DATA_DIR = REPO / ".local" / "bench"
DEFAULT_SIZES = "100000x50,1000000x100"
QUICK_SIZES = "20000x20"
GENERATOR_VERSION = 2
# feature_drift reads only spec.monitoring: a spec's default monitoring settings (thresholds), whichever module
# defines their model
SPEC = SimpleNamespace(monitoring=UseCaseSpec.model_fields["monitoring"].default)

# Known drift of numeric feature j, by j % 10: (name, shift of the latent normal's mean in sd, factor on its sd)
NUMERIC_DRIFT = {0: ("strong_shift", 0.75, 1.0), 1: ("wider_spread", 0.0, 2.0), 2: ("moderate_shift", 0.3, 1.0),
                 3: ("slight_shift", 0.05, 1.0)}
NO_DRIFT = ("none", 0.0, 1.0)
# Shapes of numeric features, by (j // 10) % 5: each is a monotone map of a latent standard normal z
SHAPES = ("normal", "lognormal", "count", "bounded", "normal_5pct_null")
CATEGORICAL = [  # (name, levels, reference shares, current shares, known drift)
    ("plan", ["basic", "standard", "premium"], [0.5, 0.35, 0.15], [0.25, 0.4, 0.35], "share_change"),
    ("region", [f"r{i}" for i in range(8)], [0.125] * 8, [0.125] * 8, "none"),
    ("channel", ["web", "store", "phone", "app", "app2"], [0.4, 0.3, 0.2, 0.1, 0.0], [0.37, 0.28, 0.18, 0.09, 0.08],
     "new_category"),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", help=f"comma-separated ROWSxFEATURES (numeric features); default {DEFAULT_SIZES}")
    p.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}; figures to {QUICK_RESULTS.name} "
                                                         "under .local/bench, not benchmarks/results")
    p.add_argument("--categorical", type=int, default=3, help="categorical columns (0-3 distinct kinds; more repeat "
                                                               "the stable one)")
    p.add_argument("--runs", type=int, default=1, help="drift runs of each side per size (best kept); the profile "
                                                       "is built once")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-evidently", action="store_true", help="measure ours only")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--out", type=Path, help="results file (default: see --quick)")
    p.add_argument("--child", nargs=2, metavar=("KIND", "ARGS_JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    return args


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        rows, _, features = part.strip().lower().partition("x")
        try:
            sizes.append((int(float(rows.replace("_", ""))), int(features)))
        except ValueError:
            raise SystemExit(f"--sizes: {part!r} is not ROWSxFEATURES (e.g. 1000000x100)") from None
    return sizes


# Synthetic frames ------------------------------------------------------------------------------------------------


def numeric_plan(features: int) -> list[dict]:
    return [{"column": f"num_{j:03d}", "shape": SHAPES[(j // 10) % len(SHAPES)],
             "drift": NUMERIC_DRIFT.get(j % 10, NO_DRIFT)[0], "shift": NUMERIC_DRIFT.get(j % 10, NO_DRIFT)[1],
             "scale": NUMERIC_DRIFT.get(j % 10, NO_DRIFT)[2]} for j in range(features)]


def categorical_plan(n: int) -> list[tuple]:
    stable = CATEGORICAL[1]
    return [CATEGORICAL[i] if i < len(CATEGORICAL) else (f"region_{i}", *stable[1:]) for i in range(n)]


def shaped(z: np.ndarray, shape: str, rng: np.random.Generator) -> np.ndarray:
    if shape == "normal":
        return 50.0 + 10.0 * z
    if shape == "lognormal":
        return np.exp(3.0 + 0.6 * z)
    if shape == "count":  # discrete: a few dozen distinct values, ties at the decile edges
        return np.floor(np.exp(1.0 + 0.7 * z))
    if shape == "bounded":
        return 1.0 / (1.0 + np.exp(-z))
    out = 10.0 * z
    out[rng.random(len(z)) < 0.05] = np.nan
    return out


def make_frame(rows: int, features: int, categorical: int, seed: int, current: bool):
    """One frame as an Arrow table, column by column (seeded per frame and column)."""
    import pyarrow as pa

    frame_id = int(current)
    data, latent = {}, {}
    for j, f in enumerate(numeric_plan(features)):
        rng = np.random.default_rng([seed, frame_id, j])
        z = rng.standard_normal(rows)
        if current:
            z = f["shift"] + f["scale"] * z
        if j in (0, 5, 7):
            latent[j] = z
        data[f["column"]] = shaped(z, f["shape"], rng)
    for i, (name, levels, ref_p, cur_p, _) in enumerate(categorical_plan(categorical)):
        rng = np.random.default_rng([seed, frame_id, 1000 + i])
        data[name] = pa.array(np.asarray(levels)[rng.choice(len(levels), size=rows, p=cur_p if current else ref_p)])
    rng = np.random.default_rng([seed, frame_id, 2000])
    logit = -1.5 + 0.5 * rng.standard_normal(rows)
    for j, w in ((0, 0.9), (5, 0.4), (7, 0.3)):
        if j in latent:
            logit += w * latent[j]
    data["score"] = 1.0 / (1.0 + np.exp(-logit))
    return pa.table(data)


def ensure_data(data_dir: Path, rows: int, features: int, categorical: int, seed: int) -> dict:
    """Write (or reuse) the reference and current Parquet files of one size, with the known drift beside them."""
    import pyarrow.parquet as pq

    folder = data_dir / f"monitoring_r{rows}_f{features}_c{categorical}_s{seed}_g{GENERATOR_VERSION}"
    files = {"reference": folder / "reference.parquet", "current": folder / "current.parquet"}
    truth_file = folder / "truth.json"
    if truth_file.exists() and all(f.exists() for f in files.values()):
        return {**json.loads(truth_file.read_text()), "reused": True}
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name, path in files.items():
        table = make_frame(rows, features, categorical, seed, current=name == "current")
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, row_group_size=100_000)
        tmp.replace(path)
        del table
    truth = {c["column"]: c["drift"] for c in numeric_plan(features)}
    truth.update({name: drift for name, *_, drift in categorical_plan(categorical)})
    truth["score"] = "follows_strong_shift"
    out = {"folder": str(folder), "reference": str(files["reference"]), "current": str(files["current"]),
           "numeric": [c["column"] for c in numeric_plan(features)],
           "categorical": [c[0] for c in categorical_plan(categorical)], "truth": truth,
           "generate_s": time.perf_counter() - t0,
           "file_mb": {k: v.stat().st_size / 2**20 for k, v in files.items()}}
    truth_file.write_text(json.dumps(out, indent=1))
    return {**out, "reused": False}


# Our side, measured in fresh subprocesses --------------------------------------------------------------------------


def proc_status_mb(field: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: 5 > /proc/self/clear_refs), so that the next phase's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_profile(a: dict) -> dict:
    """Read the reference frame and build its profile (as training does), then save it (apart)."""
    t0 = time.perf_counter()
    reference = pd.read_parquet(a["reference"])
    load_s, rss_after_load, load_peak = time.perf_counter() - t0, proc_status_mb("VmRSS"), proc_status_mb("VmHWM")
    reset = reset_peak_rss()
    features, scores = reference.drop(columns=["score"]), reference["score"].to_numpy(dtype="float64")
    c0, t0 = time.process_time(), time.perf_counter()
    profile, sample = build_profile(features, a["categorical"], scores, [], {})
    profile_s, profile_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    profile_peak = proc_status_mb("VmHWM")
    t0 = time.perf_counter()
    save_reference(Path(a["profile_dir"]), profile, sample)
    return {"load_s": load_s, "profile_s": profile_s, "profile_cpu_s": profile_cpu_s,
            "save_s": time.perf_counter() - t0, "sample_rows": int(len(sample)),
            "rss_after_load_mb": rss_after_load, "peak_rss_mb": max(load_peak, proc_status_mb("VmHWM")),
            "compute_peak_rss_mb": profile_peak if reset else None}


def child_drift(a: dict) -> dict:
    """Load the saved profile and the current frame, then feature_drift; alert sets from its figures (apart)."""
    import scipy.stats  # noqa: F401 - feature_drift imports it on first use: an import, not drift, so not timed

    t0 = time.perf_counter()
    profile, sample = load_reference(Path(a["profile_dir"]))
    current = pd.read_parquet(a["current"])
    load_s, rss_after_load, load_peak = time.perf_counter() - t0, proc_status_mb("VmRSS"), proc_status_mb("VmHWM")
    reset = reset_peak_rss()
    features, scores = current.drop(columns=["score"]), current["score"].to_numpy(dtype="float64")
    c0, t0 = time.process_time(), time.perf_counter()
    result = feature_drift(SPEC, profile, sample, features, scores)
    drift_s, drift_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    drift_peak = proc_status_mb("VmHWM")

    per_column: dict[str, dict] = {}
    for f in result.figures:
        col = "score" if f.metric == "score_psi" else f.feature
        if col is None or f.metric in ("null_share", "chi_square"):
            continue
        metric = "psi" if f.metric == "score_psi" else f.metric
        per_column.setdefault(col, {})[metric] = f.value
        per_column[col][f"{metric}_status"] = f.status
    alerts = {m: sorted(c for c, v in per_column.items() if v.get(f"{m}_status") == "alert")
              for m in ("psi", "ks_statistic", "unseen_share")}
    return {"load_s": load_s, "drift_s": drift_s, "drift_cpu_s": drift_cpu_s, "rss_after_load_mb": rss_after_load,
            "peak_rss_mb": max(load_peak, drift_peak), "drift_peak_rss_mb": drift_peak if reset else None,
            "columns": per_column, "alerts": alerts,
            "alert_columns": sorted(set().union(*alerts.values()))}


def run_child(kind: str, payload: dict) -> dict:
    out_file = Path(payload["profile_dir"]).parent / f"_{kind}_result.json"
    out_file.unlink(missing_ok=True)
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind,
                    json.dumps({**payload, "out": str(out_file)})], check=True)
    return json.loads(out_file.read_text())


def child_main(kind: str, payload: str) -> None:
    a = json.loads(payload)
    out = {"profile": child_profile, "drift": child_drift}[kind](a)
    Path(a["out"]).write_text(json.dumps(out, default=float))


# Comparison --------------------------------------------------------------------------------------------------------


def agreement(columns: list[str], ours: set[str], theirs: set[str], truth: dict[str, str]) -> dict:
    both, union = ours & theirs, ours | theirs
    by_drift: dict[str, dict] = {}
    for col in columns:
        row = by_drift.setdefault(truth[col], {"columns": 0, "ours": 0, "evidently": 0})
        row["columns"] += 1
        row["ours"] += col in ours
        row["evidently"] += col in theirs
    return {"columns": len(columns), "ours": len(ours), "evidently": len(theirs), "both": len(both),
            "ours_only": sorted(ours - theirs), "evidently_only": sorted(theirs - ours),
            "same_verdict": len(columns) - len(ours ^ theirs),
            "jaccard": len(both) / len(union) if union else 1.0, "by_known_drift": by_drift}


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["drift_s"])


def mem(run: dict, compute_key: str) -> str:
    peak = run.get(compute_key)
    during = f"{peak:,.0f} MB during the computation, " if peak is not None else ""
    return f"{during}{run['rss_after_load_mb']:,.0f} MB once the data was read"


def measure_size(args, rows: int, features: int, evidently_runner) -> dict:
    print(f"\n== {rows:,} rows x {features} numeric features, {args.categorical} categorical, score", flush=True)
    data = ensure_data(args.data_dir, rows, features, args.categorical, args.seed)
    made = "reused" if data["reused"] else f"generated in {data['generate_s']:.1f} s"
    print(f"  data: {data['folder']} ({made}; {data['file_mb']['reference']:,.0f} + "
          f"{data['file_mb']['current']:,.0f} MB Parquet)", flush=True)
    columns = [*data["numeric"], *data["categorical"], "score"]
    load_before = os.getloadavg()[0]
    payload = {"reference": data["reference"], "current": data["current"], "categorical": data["categorical"],
               "profile_dir": str(Path(data["folder"]) / "profile")}
    prof = run_child("profile", payload)
    print(f"  ours, profile (once): {prof['profile_s']:.2f} s ({prof['profile_cpu_s']:.1f} CPU s), peak RSS "
          f"{prof['peak_rss_mb']:,.0f} MB ({mem(prof, 'compute_peak_rss_mb')}); read {prof['load_s']:.1f} s apart",
          flush=True)
    ours_runs = []
    for i in range(args.runs):
        ours_runs.append({**run_child("drift", payload), "load_average_1m_after": os.getloadavg()[0]})
        r = ours_runs[-1]
        print(f"  ours, feature_drift run {i + 1}: {r['drift_s']:.2f} s ({r['drift_cpu_s']:.1f} CPU s), peak RSS "
              f"{r['peak_rss_mb']:,.0f} MB ({mem(r, 'drift_peak_rss_mb')}); read {r['load_s']:.1f} s apart; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    ev_runs = []
    if not args.skip_evidently:
        for i in range(args.runs):
            print(f"  Evidently DataDriftPreset run {i + 1} ...", flush=True)
            ev_runs.append({**evidently_runner.run_evidently(data["reference"], data["current"], columns,
                                                             data["categorical"]),
                            "load_average_1m_after": os.getloadavg()[0]})
            r = ev_runs[-1]
            print(f"  Evidently run {i + 1}: {r['drift_s']:.2f} s ({r['drift_cpu_s']:.1f} CPU s), peak RSS "
                  f"{r['peak_rss_mb']:,.0f} MB ({mem(r, 'drift_peak_rss_mb')}); read {r['load_s']:.1f} s, import "
                  f"{r['import_s']:.1f} s apart; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    ours = best(ours_runs)
    out = {
        "rows": rows, "numeric_features": features, "categorical": data["categorical"], "columns": len(columns),
        "data": {"folder": str(Path(data["folder"]).resolve().relative_to(REPO)) if Path(data["folder"]).resolve()
                 .is_relative_to(REPO) else data["folder"], **{k: data[k] for k in ("generate_s", "file_mb", "reused")}},
        "known_drift": data["truth"],
        "ours": {"profile": prof, "drift_runs_s": [r["drift_s"] for r in ours_runs],
                 **{k: v for k, v in ours.items() if k != "columns"},
                 "peak_rss_mb": max(r["peak_rss_mb"] for r in ours_runs), "per_column": ours["columns"]},
        "load_average_1m_before_after": [load_before, os.getloadavg()[0]],
    }
    if ev_runs:
        ev = best(ev_runs)
        out["evidently"] = {"drift_runs_s": [r["drift_s"] for r in ev_runs],
                            **{k: v for k, v in ev.items() if k != "columns"},
                            "peak_rss_mb": max(r["peak_rss_mb"] for r in ev_runs), "per_column": ev["columns"]}
        out["ratio"] = {"time": ev["drift_s"] / ours["drift_s"],
                        "time_vs_profile_plus_drift": ev["drift_s"] / (prof["profile_s"] + ours["drift_s"]),
                        "cpu": ev["drift_cpu_s"] / max(ours["drift_cpu_s"], 1e-9),
                        "peak_rss": out["evidently"]["peak_rss_mb"] / out["ours"]["peak_rss_mb"]}
        if ev.get("drift_peak_rss_mb") and ours.get("drift_peak_rss_mb"):
            out["ratio"]["drift_peak_rss"] = ev["drift_peak_rss_mb"] / ours["drift_peak_rss_mb"]
        out["agreement"] = agreement(columns, set(ours["alert_columns"]), set(ev["drifted_columns"]), data["truth"])
    return out


# Report ------------------------------------------------------------------------------------------------------------


def report(res: dict) -> None:
    head = ("rows x features", "ours: profile once", "ours: drift", "Evidently", "Evidently / ours",
            "drifted: ours / Ev. / both", "same verdict")
    lines = [head]
    for s in res["sizes"]:
        o, p = s["ours"], s["ours"]["profile"]
        ev, ag, ra = s.get("evidently"), s.get("agreement"), s.get("ratio")
        lines.append((
            f"{s['rows']:,} x {s['numeric_features']} (+{len(s['categorical'])} cat, score)",
            f"{p['profile_s']:.2f} s, {p['peak_rss_mb']:,.0f} MB",
            f"{o['drift_s']:.2f} s ({o['drift_cpu_s']:.1f} CPU s), {o['peak_rss_mb']:,.0f} MB",
            f"{ev['drift_s']:.1f} s ({ev['drift_cpu_s']:.1f} CPU s), {ev['peak_rss_mb']:,.0f} MB" if ev else "skipped",
            f"{ra['time']:.0f}x time ({ra['cpu']:.0f}x CPU), {ra['peak_rss']:.1f}x memory" if ra else "-",
            f"{ag['ours']} / {ag['evidently']} / {ag['both']}" if ag else f"{len(o['alert_columns'])} / - / -",
            f"{ag['same_verdict']} of {ag['columns']}" if ag else "-",
        ))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    print()
    for k, row in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print("\nmemory, MB: once the data was read / peak during the computation / peak of the whole process")
    for s in res["sizes"]:
        parts = [("ours, profile", s["ours"]["profile"], "compute_peak_rss_mb"),
                 ("ours, drift", s["ours"], "drift_peak_rss_mb")]
        parts += [("Evidently", s["evidently"], "drift_peak_rss_mb")] if "evidently" in s else []
        cells = [f"{label} {r['rss_after_load_mb']:,.0f} / {r.get(key) or float('nan'):,.0f} / {r['peak_rss_mb']:,.0f}"
                 for label, r, key in parts]
        print(f"  {s['rows']:,} x {s['numeric_features']}: " + "; ".join(cells))
    for s in res["sizes"]:
        ag = s.get("agreement")
        if not ag:
            continue
        print(f"\n{s['rows']:,} x {s['numeric_features']}: columns flagged, by known drift (ours = PSI, KS or "
              f"unseen-share alert; Evidently = its default test per column)")
        for kind, row in ag["by_known_drift"].items():
            print(f"  {kind:<22} {row['columns']:>3} columns: ours {row['ours']:>3}, Evidently {row['evidently']:>3}")
        for label, cols in (("ours only", ag["ours_only"]), ("Evidently only", ag["evidently_only"])):
            if cols:
                shown = ", ".join(f"{c} ({s['known_drift'][c]})" for c in cols[:8])
                print(f"  {label}: {shown}{', ...' if len(cols) > 8 else ''}")
        methods = sorted({v["method"] for v in s["evidently"]["per_column"].values()})
        print(f"  Evidently's tests: {', '.join(methods)}")
    m = res["machine"]
    print(f"\nload average (1 min) before / after: {m['load_average_1m_before_after'][0]:.1f} / "
          f"{m['load_average_1m_before_after'][1]:.1f} on {m['cores']} cores"
          f"{' (shared machine: other work was running)' if m['shared'] else ''}")
    print(f"\nreproduce: {res['command']}\nwritten: {res['results_file']}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return child_main(*args.child)
    import evidently_runner  # benchmarks/ is on sys.path: the script's folder
    import pyarrow
    import scipy

    sizes = parse_sizes(args.sizes)
    if args.categorical < 0:
        raise SystemExit("--categorical must be >= 0")
    command = shlex.join([".venv/bin/python", "benchmarks/monitoring.py", *(sys.argv[1:] if argv is None else argv)])
    load_before = os.getloadavg()[0]
    print(f"load average (1 min): {load_before:.1f} on {os.cpu_count()} cores", flush=True)
    if not args.skip_evidently:
        evidently_runner.ensure_env()
    results = {
        "command": command,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "versions": {"ours": {"pandas": pd.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                              "pyarrow": pyarrow.__version__}},
        "thresholds": {"ours": {k: getattr(SPEC.monitoring, k) for k in
                                ("psi_warn", "psi_alert", "ks_warn", "ks_alert", "unseen_warn", "unseen_alert")},
                       "evidently": "defaults of DataDriftPreset (per column: see per_column method and threshold)"},
        "sizes": [],
    }
    for rows, features in sizes:
        results["sizes"].append(measure_size(args, rows, features, evidently_runner))
        if "evidently" in results["sizes"][-1]:
            results["versions"]["evidently_env"] = results["sizes"][-1]["evidently"]["versions"]
    load_after = os.getloadavg()[0]
    # the benchmark keeps about one core busy itself: a load of 0.5 before it starts, or above 1.5 at its end,
    # means other work shared the 2 cores
    results["machine"].update({"load_average_1m_before_after": [load_before, load_after],
                               "shared": load_before >= 0.5 or load_after >= 1.5})
    results["results_file"] = str(args.out.resolve().relative_to(REPO)) if args.out.resolve().is_relative_to(REPO) \
        else str(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    report(results)


if __name__ == "__main__":
    main()
