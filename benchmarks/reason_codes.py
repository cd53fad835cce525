"""Exact reason codes: the boosters' own TreeSHAP (`pred_contrib` / `pred_contribs`) against the per-leaf tables of
`batchml.treeshap`, on the same rows of the same models; the two must agree or the script fails.

    .venv/bin/python benchmarks/reason_codes.py               # 20,000 rows explained, about 3 minutes
    .venv/bin/python benchmarks/reason_codes.py --rows 5000   # a quick check

Models: a 500-tree, 31-leaf LightGBM (the shape of the churn champion at 1M customers in benchmarks/chain.py) and a
300-tree, depth-6 XGBoost, both fitted on 200,000 seeded synthetic rows of 35 features with 5% missing values.
Wall and CPU seconds per explained row, the tables' one-off build (and size), and the largest difference.
Results go to benchmarks/results/reason_codes.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "reason_codes.json"


def synthetic(rows: int, features: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    X[:, :5] = np.round(X[:, :5] * 2)  # a few coarse columns, as counts and category codes are
    X[rng.random(X.shape) < 0.05] = np.nan
    logit = np.nan_to_num(X[:, :8]) @ rng.normal(size=8) + 0.5 * np.nan_to_num(X[:, 8] * X[:, 9])
    y = (logit + rng.logistic(size=rows) > 1.5).astype(int)
    return X, y


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20_000, help="rows explained by each side")
    args = p.parse_args(argv)
    import lightgbm as lgb
    import xgboost as xgb

    from batchml import treeshap

    command = shlex.join([".venv/bin/python", "benchmarks/reason_codes.py", *(sys.argv[1:] if argv is None else argv)])
    X, y = synthetic(200_000, 35)
    rows = X[: args.rows]
    treeshap.from_lightgbm(lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(X[:2000], y[:2000]).booster_
                           ).contributions(rows[:10])  # numba's compilation (once per install) is not measured
    models = {
        "lightgbm 500 trees x 31 leaves": (
            lgb.LGBMClassifier(n_estimators=500, num_leaves=31, learning_rate=0.05, verbose=-1, n_jobs=2).fit(X, y),
            lambda m: m.booster_.predict(rows, pred_contrib=True)[:, :-1],
            lambda m: treeshap.from_lightgbm(m.booster_)),
        "xgboost 300 trees x depth 6": (
            xgb.XGBClassifier(n_estimators=300, max_depth=6, learning_rate=0.05, tree_method="hist", n_jobs=2).fit(X, y),
            lambda m: m.get_booster().predict(xgb.DMatrix(rows), pred_contribs=True)[:, :-1],
            lambda m: treeshap.from_xgboost(m.get_booster())),
    }
    results = []
    for name, (model, booster_shap, build) in models.items():
        print(f"{name}: the booster's TreeSHAP on {len(rows):,} rows ...", flush=True)
        theirs, b_wall, b_cpu = timed(lambda: booster_shap(model))  # noqa: B023 - called at once
        tables, build_wall, _ = timed(lambda: build(model))  # noqa: B023
        ours, o_wall, o_cpu = timed(lambda: tables.contributions(rows))  # noqa: B023
        diff = float(np.abs(ours - theirs).max())
        scale = float(np.abs(theirs).max())
        if diff > 1e-4 * max(scale, 1.0):  # XGBoost sums in float32; LightGBM agrees to ~1e-15
            raise SystemExit(f"{name}: the tables differ from the booster by {diff:g}")
        results.append({"model": name, "rows": len(rows), "booster_wall_s": round(b_wall, 2),
                        "booster_cpu_s": round(b_cpu, 2), "tables_build_s": round(build_wall, 2),
                        "tables_mb": round(tables.table.nbytes / 2**20, 1), "tables_wall_s": round(o_wall, 2),
                        "tables_cpu_s": round(o_cpu, 2), "speedup_wall": round(b_wall / o_wall, 1),
                        "speedup_with_build": round(b_wall / (o_wall + build_wall), 1), "max_abs_difference": diff,
                        "booster_ms_per_row": round(1000 * b_wall / len(rows), 3),
                        "tables_ms_per_row": round(1000 * o_wall / len(rows), 3)})
    print(f"\n{command}")
    print(f"{'model':<32} {'booster':>10} {'tables':>10} {'build':>7} {'MB':>6} {'speed-up':>9} {'max diff':>9}")
    for r in results:
        print(f"{r['model']:<32} {r['booster_wall_s']:>9.1f}s {r['tables_wall_s']:>9.2f}s {r['tables_build_s']:>6.2f}s "
              f"{r['tables_mb']:>6.0f} {r['speedup_wall']:>8.1f}x {r['max_abs_difference']:>9.1e}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    print(f"results: {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
