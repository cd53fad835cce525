"""What tuning on a sample costs (issue 15): the same Optuna search of the churn spec's boosted candidates, its trials
fitted on a sample of the train split (`training.tuning.sample_rows`, `batchml.datasets.tuning_sample`) or on every
train row, the best settings refitted on all of them either way, then scored on the untouched test snapshots.

    .venv/bin/python benchmarks/tuning_sample.py --size 100000 --samples 100000,250000,all
    .venv/bin/python benchmarks/tuning_sample.py --size 1000000 --samples 250000,1000000,4000000 --kinds lightgbm

It reads the training set benchmarks/chain.py saved for that size (`.local/bench/chain/<size>/data/training/churn/
chain/data`: twelve weekly snapshots, time split 8/2/2), so run the chain at that size first. Every setting runs the
same number of trials with no time budget (a timeout would give the larger sample fewer trials: that comparison
would measure the budget, not the sample) and the same seed. Figures: the trials' wall and CPU time, the refit's,
the test ROC AUC and PR AUC of the refitted model, and their differences from the largest setting. Results go to
benchmarks/results/tuning_sample_<size>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "include") not in sys.path:
    sys.path.insert(0, str(REPO / "include"))

from chain import BENCH_ROOT, LABEL, USE_CASE  # noqa: E402 - where the chain benchmark keeps each size's state


def training_set_folder(size: int) -> Path:
    """Where benchmarks/chain.py's training stage saved the training set of `size` customers (its BATCHML_HOME's
    data root, then `datasets.prepare_training_set`'s layout)."""
    return BENCH_ROOT / str(size) / "data" / "training" / USE_CASE / LABEL / "data"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=100_000, help="customers of the chain benchmark's training set")
    p.add_argument("--samples", default="100000,250000,all", help="comma-separated sample_rows values; 'all': none")
    p.add_argument("--kinds", default="xgboost,lightgbm", help="candidate kinds of specs/churn.yaml to tune")
    p.add_argument("--trials", type=int, default=8, help="trials per candidate and setting (no time budget)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from batchml.datasets import TrainingSet
    from batchml.metrics import metric_value
    from batchml.specs import get_spec
    from batchml.training import tune_candidate

    folder = training_set_folder(args.size)
    if not (folder / "training_set.json").exists():
        raise SystemExit(f"{folder}: no training set; run `.venv/bin/python benchmarks/chain.py --sizes {args.size}` "
                         "first (it saves the one its training stage built)")
    command = shlex.join([".venv/bin/python", "benchmarks/tuning_sample.py", *(sys.argv[1:] if argv is None else argv)])
    ts = TrainingSet.load(folder)
    spec = get_spec(REPO / "specs", USE_CASE)
    rows = {name: len(frame) for name, frame in ts.frames.items()}
    print(f"training set of {args.size:,} customers: {rows} rows, {len(ts.features)} features; "
          f"{args.trials} trials per setting, no time budget", flush=True)
    samples = [None if s == "all" else int(s) for s in args.samples.split(",")]
    out = {"command": command, "size": args.size, "rows": rows, "trials": args.trials, "runs": []}
    for kind in args.kinds.split(","):
        cand = next(c for c in spec.training.candidates if c.kind == kind)
        for sample in samples:
            tuning = spec.training.tuning.model_copy(update={"sample_rows": sample, "timeout_seconds": None})
            run_spec = spec.model_copy(update={"training": spec.training.model_copy(update={"tuning": tuning})})
            wall, cpu = time.perf_counter(), time.process_time()
            tuned = tune_candidate(cand, ts, run_spec, trials=args.trials, timeout=10**9)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            p = tuned.model.predict_proba(ts.frames["test"])
            y = ts.y("test")
            run = {"kind": kind, "sample_rows": sample, "trial_train_rows": tuned.model.info["trial_train_rows"],
                   "trials_s": round(tuned.seconds, 1), "total_s": round(wall, 1),
                   "refit_s": round(wall - tuned.seconds, 1), "cpu_s": round(cpu, 1),
                   "valid_roc_auc": round(tuned.score, 5), "params": tuned.model.info["params"],
                   "test_roc_auc": round(metric_value("roc_auc", y, p), 5),
                   "test_pr_auc": round(metric_value("pr_auc", y, p), 5),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
            out["runs"].append(run)
            print(f"  {kind:<9} trials on {run['trial_train_rows']:>10,} rows: trials {run['trials_s']:7.1f} s, "
                  f"refit {run['refit_s']:6.1f} s ({run['cpu_s']:.0f} CPU s); test ROC AUC {run['test_roc_auc']:.4f}, "
                  f"PR AUC {run['test_pr_auc']:.4f}", flush=True)
    for kind in args.kinds.split(","):
        runs = [r for r in out["runs"] if r["kind"] == kind]
        largest = max(runs, key=lambda r: r["trial_train_rows"])
        for r in runs:
            r["test_roc_auc_cost"] = round(largest["test_roc_auc"] - r["test_roc_auc"], 5)
            r["speedup"] = round(largest["total_s"] / r["total_s"], 2)
    target = REPO / "benchmarks" / "results" / f"tuning_sample_{args.size}.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print("\nsetting                  trials+refit   test ROC AUC   cost vs largest   speed-up")
    for r in out["runs"]:
        print(f"{r['kind']:<9} {r['trial_train_rows']:>12,} rows {r['total_s']:8.1f} s {r['test_roc_auc']:12.4f} "
              f"{r['test_roc_auc_cost']:+15.4f} {r['speedup']:9.2f}x")
    print(f"\nwrote {target.relative_to(REPO)}\nreproduce: {command}")


if __name__ == "__main__":
    main()
