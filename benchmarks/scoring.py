"""Scoring benchmarks: publishing score rows into PostgreSQL, and a whole scoring run for 1,000,000 customers.

    .venv/bin/python benchmarks/scoring.py [--rows 1000000] [--skip-run]

1. Publish: the same N score rows written (a) by the pipeline's path (Arrow batches -> staging table through ADBC's
   binary COPY -> primary key -> partition swap) and (b) by plain `pandas.DataFrame.to_sql`, into the throwaway
   PostgreSQL server this script starts. Prints rows/s and the ratio; peak RSS of the pipeline's path for N/10 and N
   rows, each measured in a fresh process.
2. Scoring run: the demo's champion (run ./bin/demo first) scores N customers (the demo's feature partition
   resampled to N rows with new ids): predict, reason codes (exact TreeSHAP for the top share, Saabas for the rest),
   bulk load, Great Expectations in the warehouse, publish. Prints seconds per step, and what exact reason codes for
   every row would cost, measured on a sample.
Figures are written to benchmarks/results/scoring.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "scoring.json"
DAY = dt.date(2026, 7, 1)


def score_batches(rows: int, batch_rows: int = 100_000):
    """Realistic score rows, generated batch by batch (never all in memory)."""
    from batchml import score_table as st

    columns = st.score_columns("customer_id", 3, {"plan": "categorical", "region": "categorical",
                                                  "age_band": "categorical"})
    schema = st.arrow_schema(columns)
    rng = np.random.default_rng(0)
    features = np.array(["txn_days_since_last", "txn_trend_7d_30d", "tickets_count_30d", "tenure_days", "plan"])
    stamp = pd.Timestamp("2026-07-01T02:00", tz="UTC")
    for start in range(0, rows, batch_rows):
        n = min(batch_rows, rows - start)
        score = rng.beta(1, 12, n)
        data = {
            "customer_id": pa.array([f"C{i:09d}" for i in range(start, start + n)]),
            "as_of_date": pa.array([DAY] * n, pa.date32()), "model_role": pa.array(["champion"] * n),
            "score": pa.array(score), "risk_decile": pa.array(rng.integers(1, 11, n).astype("int16")),
            "risk_band": pa.array(np.where(score >= 0.3, "high", np.where(score >= 0.1, "medium", "low"))),
        }
        for i in (1, 2, 3):
            data[f"reason_{i}"] = pa.array(features[rng.integers(0, 5, n)])
            data[f"reason_{i}_value"] = pa.array(np.char.mod("%.3f", rng.random(n)))
            data[f"reason_{i}_impact"] = pa.array(rng.normal(0, 0.3, n))
        data.update({
            "plan": pa.array(np.array(["basic", "standard", "premium"])[rng.integers(0, 3, n)]),
            "region": pa.array(np.array(["north", "south", "east", "west"])[rng.integers(0, 4, n)]),
            "age_band": pa.array(np.array(["18-24", "25-34", "35-44"])[rng.integers(0, 3, n)]),
            "reasons_exact": pa.array(score > 0.2), "model_name": pa.array(["churn"] * n),
            "model_version": pa.array(np.full(n, 3, dtype="int32")), "airflow_run_id": pa.array(["bench"] * n),
            "scored_at": pa.array([stamp] * n, pa.timestamp("us", tz="UTC")),
        })
        yield pa.RecordBatch.from_pydict(data, schema=schema)


def publish_pipeline(url: str, rows: int, streamed: bool = False) -> dict:
    """The pipeline's path: staging table via ADBC COPY, then the partition swap (key built before it).

    Timed runs load batches generated beforehand, as the scoring step hands over a written file (generating the
    synthetic rows costs more than loading them); `streamed` generates them on the fly instead, so that peak memory
    shows what one batch at a time costs.
    """
    from batchml import score_table as st
    from batchml import warehouse as wh

    columns = st.score_columns("customer_id", 3, {"plan": "categorical", "region": "categorical",
                                                  "age_band": "categorical"})
    batches = score_batches(rows) if streamed else list(score_batches(rows))
    engine = wh.create_engine(url)
    st.ensure_table(engine, "bench_scores", columns)
    staging = wh.staging_name("bench_scores", DAY, f"bench-{time.time()}")
    st.sql_table(staging, columns, keyed=False, day=DAY).create(engine)
    t0 = time.perf_counter()
    loaded = wh.bulk_load(engine, staging, batches, st.arrow_schema(columns))
    t1 = time.perf_counter()
    wh.publish_partition(engine, "bench_scores", staging, DAY)
    t2 = time.perf_counter()
    engine.dispose()
    return {"rows": loaded, "copy_s": t1 - t0, "key_and_swap_s": t2 - t1, "total_s": t2 - t0}


def publish_to_sql(url: str, rows: int) -> dict:
    """Plain pandas: the same rows as one DataFrame, `to_sql` into a fresh table."""
    import sqlalchemy as sa

    frame = pa.Table.from_batches(list(score_batches(rows))).to_pandas()
    engine = sa.create_engine(url)
    t0 = time.perf_counter()
    frame.to_sql("bench_scores_to_sql", engine, if_exists="replace", index=False, chunksize=50_000)
    seconds = time.perf_counter() - t0
    engine.dispose()
    return {"rows": rows, "total_s": seconds}


def peak_rss_of_publish(url: str, rows: int) -> float:
    """Peak RSS (MB) of a fresh process running the pipeline's publish path for `rows` rows, streamed."""
    out = subprocess.run([sys.executable, __file__, "--child-publish", str(rows), url], capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def scoring_run(rows: int, url: str, work: Path) -> dict:
    """A whole scoring run for `rows` customers with the demo's champion, step by step."""
    from batchml import registry, score_table, scoring, validation
    from batchml.results import PinnedVersions
    from batchml.settings import get_settings
    from batchml.specs import get_spec
    from batchml.storage import feature_partition_file

    demo = get_settings()
    spec = get_spec(demo.specs_dir, "churn")
    source = feature_partition_file(demo.features_root, "churn", DAY)
    if not source.exists():
        raise SystemExit(f"{source} not found: run ./bin/demo first (it trains the champion this benchmark uses)")
    client = registry.connect(demo)
    champion = registry.resolve_champion(client, spec.model_name)
    model = registry.load_batch_model(f"models:/{spec.model_name}/{champion}")

    # N customers: the demo's feature partition resampled, with new ids (real feature distributions)
    base = pd.read_parquet(source)
    rng = np.random.default_rng(1)
    big = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    big["customer_id"] = [f"B{i:09d}" for i in range(rows)]
    os.environ.update({"BATCHML_HOME": str(work / "home"), "BATCHML_WAREHOUSE_URL": url,
                       "BATCHML_MLFLOW_TRACKING_URI": demo.mlflow_tracking_uri})
    settings = get_settings()
    target = feature_partition_file(settings.features_root, "churn", DAY)
    target.parent.mkdir(parents=True, exist_ok=True)
    big.to_parquet(target, row_group_size=100_000)

    # the reason-code strategy, measured on this champion
    sample = big.head(min(rows, 100_000))
    X = model.transform(sample)
    t0 = time.perf_counter()
    model.predict_proba(big)
    predict_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.contributions(X.head(20_000))
    exact_20k = time.perf_counter() - t0
    approx_100k = None
    if model.kind == "xgboost":
        t0 = time.perf_counter()
        model.contributions(X, approximate=True)
        approx_100k = time.perf_counter() - t0

    pinned = PinnedVersions(model_name=spec.model_name, champion=champion)
    t0 = time.perf_counter()
    ref = scoring.score_features(spec, settings, DAY, pinned, "bench", "bench")
    exact_rows = ref.exact_reason_rows
    ref = score_table.load_staging(spec, settings, ref, "bench")
    ref = validation.validate_scores(spec, settings, ref, "bench")
    out = score_table.publish_scores(spec, settings, ref)
    total = time.perf_counter() - t0
    return {
        "rows": rows, "model": f"{spec.model_name} v{champion} ({model.kind}, {model.info.get('best_iteration')} "
                                f"iterations, params {model.info.get('params')})",
        "steps_s": out.seconds, "total_s": total,
        "predict_all_rows_s": predict_all,
        "exact_contributions_per_100k_s": exact_20k * 5,
        "exact_for_every_row_estimate_s": exact_20k * 5 * rows / 100_000,
        "approx_contributions_per_100k_s": approx_100k,
        "exact_share": spec.scoring.reason_codes.exact_share,
        "exact_budget_seconds": spec.scoring.reason_codes.exact_budget_seconds,
        "exact_rows": exact_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-run", action="store_true", help="only the publishing benchmark")
    parser.add_argument("--child-publish", nargs=2, metavar=("ROWS", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_publish:  # measured in its own process, so that peak RSS is this path's alone
        publish_pipeline(args.child_publish[1], int(args.child_publish[0]), streamed=True)
        # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its parent's RSS at fork time
        hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
        print(int(hwm.split()[1]) / 1024)
        return
    from batchml.localpg import LocalPostgres

    command = f".venv/bin/python benchmarks/scoring.py --rows {args.rows}" + (" --skip-run" if args.skip_run else "")
    results: dict = {"command": command, "machine": {"cores": os.cpu_count()}}
    with LocalPostgres() as pg, tempfile.TemporaryDirectory() as tmp:
        print(f"PostgreSQL 15 at {pg.url}")
        ours = publish_pipeline(pg.url, args.rows)
        plain = publish_to_sql(pg.url, args.rows)
        small, large = peak_rss_of_publish(pg.url, args.rows // 10), peak_rss_of_publish(pg.url, args.rows)
        results["publish"] = {
            "rows": args.rows, "pipeline": ours, "to_sql": plain,
            "pipeline_rows_per_s": args.rows / ours["total_s"], "to_sql_rows_per_s": args.rows / plain["total_s"],
            "speedup": plain["total_s"] / ours["total_s"],
            "peak_rss_mb": {str(args.rows // 10): small, str(args.rows): large},
        }
        p = results["publish"]
        print(f"\nPublishing {args.rows:,} score rows into PostgreSQL")
        print(f"  pipeline (ADBC COPY + key + swap): {ours['total_s']:.1f} s = {p['pipeline_rows_per_s']:,.0f} rows/s "
              f"(copy {ours['copy_s']:.1f} s, key and swap {ours['key_and_swap_s']:.1f} s)")
        print(f"  pandas to_sql:                     {plain['total_s']:.1f} s = {p['to_sql_rows_per_s']:,.0f} rows/s")
        print(f"  speed-up {p['speedup']:.1f}x (goal >= 10x); peak RSS {small:.0f} MB for {args.rows // 10:,} rows, "
              f"{large:.0f} MB for {args.rows:,} rows")
        if not args.skip_run:
            run = scoring_run(args.rows, pg.url, Path(tmp))
            results["scoring_run"] = run
            print(f"\nScoring run for {args.rows:,} customers with {run['model']}")
            for step, seconds in run["steps_s"].items():
                print(f"  {step:<14} {seconds:6.1f} s")
            print(f"  total          {run['total_s']:6.1f} s (goal < 120 s)")
            print(f"  reason codes: predict all rows {run['predict_all_rows_s']:.1f} s; exact TreeSHAP "
                  f"{run['exact_contributions_per_100k_s']:.1f} s per 100k rows (every row: "
                  f"~{run['exact_for_every_row_estimate_s']:.0f} s); Saabas "
                  f"{run['approx_contributions_per_100k_s'] or float('nan'):.1f} s per 100k rows")
            print(f"  exact codes for {run['exact_rows']:,} of {args.rows:,} rows (spec: at least the top "
                  f"{run['exact_share']:.0%}, more within {run['exact_budget_seconds']} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nFigures: {RESULTS}\nReproduce: {command}")


if __name__ == "__main__":
    main()
