"""Drift scenario: does retraining after a drift help, once the drift's labels have matured?

    .venv/bin/python benchmarks/drift_retraining.py                 # the demo's data (10,000 customers), a year long
    .venv/bin/python benchmarks/drift_retraining.py --customers 3000 --trials 4   # smaller and faster

The demo's generated churn data (drift from 2026-07-03, strength 2), extended to 2026-09-30 so that outcomes of
August's scores are known. The package's steps run as the DAGs run them (features with their checks, scoring,
monitoring, training and the gate), in one process with one Spark session, into a state folder of their own
(.local/bench/drift_retraining/, reused: the data is generated once):

1. v1 is trained for 2026-07-01 (before the drift);
2. features, scoring and monitoring for days after the drift: monitoring sees the drift and schedules the
   retraining for the day the labels of the first drifted day mature (first drift day + 30 days);
3. the monitoring run of that day requests it; v2 is trained for that date and meets v1 at the gate; whatever the
   verdict, the other version keeps scoring in shadow (as challenger), so both score the same later dates;
4. realized performance on 2026-09-30, from the score table and the churn events: each version's ROC AUC on the
   scored dates since the drift whose outcomes have matured, pooled and paired (same dates, same customers).

The figures go to .local/bench/drift_retraining/result.json and are printed with this command line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRIFT_START = dt.date(2026, 7, 3)
T1 = dt.date(2026, 7, 1)
END = dt.date(2026, 9, 30)
FINAL = END  # realized performance is read on the last day: outcomes strictly before it are known


def _days(first: dt.date, last: dt.date, step: int) -> list[dt.date]:
    out, day = [], first
    while day <= last:
        out.append(day)
        day += dt.timedelta(days=step)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--timeout", type=int, default=25)
    parser.add_argument("--root", type=Path, default=REPO / ".local" / "bench" / "drift_retraining")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("batchml.monitoring", "batchml.realized", "batchml.retraining", "batchml.gate"):
        logging.getLogger(name).setLevel(logging.INFO)

    from batchml import features, gate, monitoring, registry, score_table, scoring, validation
    from batchml.datasets import ensure_snapshots, prepare_training_set
    from batchml.evaluation import evaluate
    from batchml.generate import GeneratorConfig, generate
    from batchml.partitions import landed_raw
    from batchml.results import TrainingRequest
    from batchml.settings import Settings
    from batchml.spark import local_spark_session
    from batchml.specs import load_spec
    from batchml.storage import DATA_FILE, Landing, feature_partition_dir
    from batchml.training import train_candidates

    started = time.perf_counter()
    spec = load_spec(REPO / "specs" / "churn.yaml")
    root = args.root / f"c{args.customers}"
    landing = Landing(str(root / "landing"))
    start = dt.date(2025, 10, 1)
    cfg = GeneratorConfig(customers=args.customers, start=start, days=(END - start).days + 1, seed=7,
                          drift_start=DRIFT_START, drift_strength=2.0)
    generate(cfg, landing, progress=lambda m: print("  generate:", m, flush=True))
    settings = Settings(home=root / "home", landing_url=landing.url)
    settings.home.mkdir(parents=True, exist_ok=True)
    spark = local_spark_session("local[2]", app_name="drift-retraining")
    spark.sparkContext.setLogLevel("ERROR")
    say = lambda msg: print(f"[{time.perf_counter() - started:6.0f} s] {msg}", flush=True)  # noqa: E731

    def build_features(day: dt.date) -> None:
        if (feature_partition_dir(settings.features_root, spec.name, day) / DATA_FILE).exists():
            return
        checked = validation.validate_raw_partitions(spec, settings, landed_raw(spec, settings, day), "bench")
        staged = features.build_feature_partition(spark, spec, settings, checked, "bench")
        features.publish_feature_partition(spec, settings, validation.validate_feature_partition(
            spec, settings, staged, "bench"), "bench")

    def train(day: dt.date, request: TrainingRequest) -> dict:
        ensure_snapshots(spark, spec, settings, day, "bench")
        ref = prepare_training_set(spec, settings, day, settings.data_root / "training" / f"run_{day}")
        evaluated = evaluate(spec, train_candidates(spec, ref, args.trials, args.timeout))
        result = gate.register_and_gate(spec, settings, evaluated, f"bench_{day}", request)
        say(f"trained v{result.version} for {day}: {result.verdict}, test ROC AUC {result.test_roc_auc:.4f}")
        return result.model_dump(mode="json")

    def score(day: dt.date) -> None:
        pinned = scoring.pin_models(spec, settings)
        staged = scoring.score_features(spec, settings, day, pinned, f"bench_{day}", "bench")
        loaded = score_table.load_staging(spec, settings, staged, "bench")
        score_table.publish_scores(spec, settings, validation.validate_scores(spec, settings, loaded, "bench"))

    def monitor(day: dt.date):
        drift = monitoring.compute_drift(spec, settings, day)
        performance = monitoring.realized_performance(spec, settings, day)
        decision = monitoring.decide_retrain(spec, settings, drift, performance, training_active=False)
        published = monitoring.publish_monitoring(spec, settings, drift, performance, decision, f"bench_{day}")
        return drift, performance, decision, published

    client = registry.connect(settings)
    out: dict = {"command": " ".join(shlex.quote(a) for a in [".venv/bin/python", *sys.argv]),
                 "data": json.loads(cfg.to_json()), "days": {}}
    if registry.alias_version(client, spec.model_name, registry.CHAMPION) is None:
        out["v1"] = train(T1, TrainingRequest(training_date=T1, reason="drift scenario: before the drift"))
    v2 = None
    # the first days after the drift, then weekly; the scheduled training date is added when monitoring sets it
    monitored = sorted({dt.date(2026, 7, 2), dt.date(2026, 7, 5), dt.date(2026, 7, 8),
                        *_days(dt.date(2026, 7, 15), dt.date(2026, 8, 31), 7), dt.date(2026, 8, 31)})
    while monitored:
        day = monitored.pop(0)
        build_features(day)
        score(day)
        drift, performance, decision, published = monitor(day)
        out["days"][day.isoformat()] = {"retrain": published.retrain, "scheduled_for": str(decision.scheduled_for),
                                        "score_psi": (drift.summary or {}).get("score_psi"), "report": published.report}
        say(f"{day}: score PSI {(drift.summary or {}).get('score_psi', float('nan')):.3f}; retraining "
            f"{published.retrain}" + (f" for {decision.scheduled_for}" if decision.scheduled_for else ""))
        if decision.scheduled_for and decision.scheduled_for not in monitored and decision.scheduled_for > day:
            monitored = sorted({*monitored, decision.scheduled_for})
        if decision.request and v2 is None:
            request = monitoring.retrain_request(decision)
            out["request"] = request.model_dump(mode="json")
            v2 = train(request.training_date, request)
            out["v2"] = v2
            # whatever the verdict, both versions score every later date: the one that is not champion in shadow
            shadow = v2["previous_champion"] if v2["verdict"] == "champion" else v2["version"]
            client.set_registered_model_alias(spec.model_name, registry.CHALLENGER, str(shadow))
            say(f"v{v2['version']} is {v2['verdict']}; v{shadow} scores in shadow from now on")
            score(day)  # the request's day, scored again with both versions
    build_features(FINAL)
    score(FINAL)
    drift, performance, decision, published = monitor(FINAL)
    out["realized_since_drift"] = performance.since_drift
    out["drift_since"] = str(performance.drift_since)
    out["final_report"] = published.report
    (root / "result.json").write_text(json.dumps(out, indent=2, default=str))
    say(f"realized ROC AUC on outcomes after the drift first seen on {performance.drift_since}:")
    for e in performance.since_drift:
        say(f"  v{e['model_version']} ({', '.join(e['roles'])}) {e['scope']:6s} {e['first_day']}..{e['last_day']} "
            f"({e['days']} dates, {int(e['rows']):,} rows, {int(e['positives']):,} churners): "
            f"ROC AUC {e.get('roc_auc', float('nan')):.4f}")
    say(f"figures: {root / 'result.json'}; report: {published.report}")
    say(f"reproduce: {out['command']}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
