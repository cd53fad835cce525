"""Fraud training benchmark (issue 17): the training DAG of specs/fraud.yaml, run through Airflow (`dag.test`, as
`airflow dags test fraud__training` runs it) on generated card-fraud data, and the model it selects against the
logistic-regression baseline and the rule baseline on the same test days: PR AUC, and recall and precision at the
daily alert budget (the figures the gate decides on).

    .venv/bin/python benchmarks/fraud_training.py [--transactions 50000] [--days 90] [--seed 11]

The spec is used as it is (30-day chargeback horizon, daily snapshots: 8 train, 2 validation, 2 test days, negatives
down-sampled to 10% with weights). The training date is the day after the last generated day, so the test days are
the newest whose chargebacks have matured. Everything runs in a throwaway BATCHML_HOME and AIRFLOW_HOME under
.local/bench/fraud_training/ (SQLite warehouse and MLflow); the data is generated once per config and reused.
Figures go to benchmarks/results/fraud_training.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "fraud_training.json"
ROOT = REPO / ".local" / "bench" / "fraud_training"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transactions", type=int, default=50_000, help="transactions a day")
    p.add_argument("--days", type=int, default=90,
                   help="days generated: the 12 snapshot days, 30 days of maturity, 44 days of history before")
    p.add_argument("--seed", type=int, default=11)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "benchmarks/fraud_training.py", "--transactions",
                          str(args.transactions), "--days", str(args.days), "--seed", str(args.seed)])
    data = ROOT / f"t{args.transactions}_d{args.days}_s{args.seed}"
    home = ROOT / "home"
    shutil.rmtree(home, ignore_errors=True)  # a fresh registry, warehouse and feature store each run
    os.environ.update({"BATCHML_HOME": str(home), "BATCHML_LANDING_URL": str(data / "landing"),
                       "BATCHML_SPECS_DIR": str(REPO / "specs"), "AIRFLOW_HOME": str(home / "airflow"),
                       "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                       "AIRFLOW_CONN_BATCHML_SPARK": json.dumps({"conn_type": "spark", "host": "local[2]"})})

    from batchml.demo import migrate_metadata_db, run_dag
    from batchml.fraud_data import FraudDataConfig, generate_fraud_data
    from batchml.settings import get_settings
    from batchml.storage import Landing

    cfg = FraudDataConfig(cards=max(2_000, int(args.transactions * 0.4)), merchants=max(300, args.transactions // 25),
                          transactions_per_day=args.transactions, days=args.days, seed=args.seed)
    print(f"Fraud training at {args.transactions:,} transactions a day, {args.days} days ({os.cpu_count()} cores)")
    started = time.perf_counter()
    summary = generate_fraud_data(cfg, Landing(str(data / "landing")))
    print(f"  data: {summary.rows['card_transactions']:,} transactions, fraud rate {summary.fraud_rate:.3%} "
          f"({'reused' if summary.skipped else f'{time.perf_counter() - started:.0f} s'})", flush=True)

    settings = get_settings()
    migrate_metadata_db(settings)
    training_date = cfg.end + dt.timedelta(days=1)
    outcome = run_dag(settings, "fraud__training", training_date)
    if not outcome.ok:
        raise SystemExit(f"the training run failed: see {outcome.log_file}")
    evaluation_file = max(home.rglob("evaluation.json"), key=lambda p: p.stat().st_mtime)
    evaluation = json.loads(evaluation_file.read_text())
    lineage = json.loads((evaluation_file.parent / "data" / "training_set.json").read_text())["lineage"]
    models = {f"new model ({evaluation['selected']})": evaluation["test_metrics"],
              f"baseline ({evaluation['baseline']['name']}, logistic)": evaluation["baseline"]["test_metrics"],
              **{f"rule {name}": metrics for name, metrics in evaluation.get("rules", {}).items()}}
    import pandas as pd

    from batchml import warehouse as wh
    from batchml.gate import REGISTRY_EVENTS_TABLE

    gate = pd.read_sql(f"SELECT model_version, event, reasons FROM {REGISTRY_EVENTS_TABLE} ORDER BY recorded_at",
                       wh.engine(settings.warehouse_url)).iloc[-1].to_dict()
    print(f"\nTest days {lineage['snapshots']['test']} ({int(evaluation['test_metrics']['rows']):,} transactions, "
          f"fraud rate {evaluation['test_metrics']['base_rate']:.3%}), alert budget "
          f"{evaluation['alert_budget']:.1%} a day:")
    print(f"  {'model':<48} {'PR AUC':>7} {'recall@budget':>14} {'precision@budget':>17}")
    for name, m in models.items():
        print(f"  {name:<48} {m['pr_auc']:7.4f} {m['recall_at_budget']:14.4f} {m['precision_at_budget']:17.4f}")
    new = evaluation["test_metrics"]
    beats = {name: all(new[k] > m[k] for k in ("pr_auc", "recall_at_budget"))
             for name, m in models.items() if not name.startswith("new model")}
    results = {
        "command": command, "training_date": training_date.isoformat(), "run_seconds": round(outcome.seconds, 1),
        "rows": lineage["rows"], "label_rate": lineage["label_rate"], "negative_sample": lineage["negative_sample"],
        "snapshots": lineage["snapshots"], "selected": evaluation["selected"], "alert_budget": evaluation["alert_budget"],
        "test": models, "beats_every_baseline": beats,
        "gate": gate,
        "data": {"transactions": summary.rows["card_transactions"], "fraud_rate": summary.fraud_rate},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_1m": os.getloadavg()[0]},
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(f"\ngate: v{gate['model_version']} {gate['event']}")
    print(f"the new model beats {sum(beats.values())} of {len(beats)} baselines on both PR AUC and recall at the "
          f"budget; training run {outcome.seconds:.0f} s (log {outcome.log_file})")
    print(f"reproduce: {command}\nwritten: {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
