"""Deterministic synthetic raw data for the `churn` demo use case, landed as daily Parquet partitions.

Behaviour the model can learn, with noise:
  * a customer may start to *disengage* (hazard higher on the basic plan, for young and for new customers);
    from then on activity decays, support tickets become frequent and turn to billing and cancellation, and
    most disengaged customers churn some weeks later (some recover instead);
  * a smaller share churns abruptly, with no warning signal (noise no model can catch).
Knobs: `customers` (scale), `drift_start`/`drift_strength` (from that day: more activity, larger amounts, more app
use, a new category), `seed`. Memory is bounded: customers are simulated in blocks of `block_size`, each block writes its
own part file per day, so peak memory depends on the block size, not on the number of customers or days.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from batchml.storage import Landing

log = logging.getLogger(__name__)

PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east", "west"]
AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
CHANNELS = ["web", "app", "store"]
CATEGORIES = ["groceries", "electronics", "fashion", "travel", "entertainment", "home", "health", "utilities"]
DRIFT_CATEGORY = "crypto"
TICKET_REASONS = ["billing", "technical", "service", "cancellation"]
SOURCES = ("customers", "transactions", "support_tickets", "churn_events")

_DAY_US = 86_400_000_000
_MAX_BLOCK = 1_000_000  # customer ids are C<block:03d><index:06d>


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Equal configs give byte-identical data."""

    customers: int = 5_000
    """Customers at the start; new ones sign up every day (about `signup_rate` of the base)."""
    start: dt.date = dt.date(2026, 1, 1)
    days: int = 212
    seed: int = 7
    drift_start: dt.date | None = None
    drift_strength: float = 1.0
    block_size: int = 50_000
    activity_per_day: float = 0.4
    """Mean transactions per engaged customer per day (10M events over 200k customers ~ 0.42 over 120 days)."""
    signup_rate: float = 0.0025

    def __post_init__(self):
        if self.customers < 1 or self.days < 1:
            raise ValueError("customers and days must be at least 1")
        if not 1 <= self.block_size < _MAX_BLOCK // 2:
            raise ValueError(f"block_size must be between 1 and {_MAX_BLOCK // 2 - 1}")
        if self.drift_strength < 0:
            raise ValueError("drift_strength must be >= 0")

    @property
    def end(self) -> dt.date:
        """Last day generated (included)."""
        return self.start + dt.timedelta(days=self.days - 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)


@dataclass
class GenerationSummary:
    landing_url: str
    first_day: dt.date
    last_day: dt.date
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    seconds: float = 0.0
    skipped: bool = False


def _schemas():
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return {
        "customers": pa.schema(
            [("customer_id", pa.string()), ("signup_ts", ts), ("plan", pa.string()), ("region", pa.string()),
             ("age_band", pa.string())]
        ),
        "transactions": pa.schema(
            [("transaction_id", pa.string()), ("customer_id", pa.string()), ("event_ts", ts), ("amount", pa.float64()),
             ("channel", pa.string()), ("category", pa.string())]
        ),
        "support_tickets": pa.schema(
            [("ticket_id", pa.string()), ("customer_id", pa.string()), ("opened_ts", ts), ("reason", pa.string())]
        ),
        "churn_events": pa.schema([("customer_id", pa.string()), ("churn_ts", ts)]),
    }


class _Block:
    """One block of customers with their whole (latent) life line, drawn up front."""

    def __init__(self, cfg: GeneratorConfig, index: int, n_initial: int):
        rng = np.random.default_rng([cfg.seed, index])
        self.rng = rng
        n_new = int(rng.poisson(cfg.signup_rate * n_initial * cfg.days)) if n_initial else 0
        n = n_initial + n_new
        self.n = n
        # signup day relative to start: the initial base signed up during the last 3 years
        signup = np.empty(n)
        signup[:n_initial] = -rng.uniform(1, 3 * 365, n_initial)
        signup[n_initial:] = rng.uniform(0, cfg.days, n_new)
        self.signup = signup
        self.landing_day = np.where(signup < 0, 0, np.floor(signup)).astype(np.int64)
        self.plan = rng.choice(3, n, p=[0.5, 0.35, 0.15])
        self.region = rng.choice(4, n, p=[0.3, 0.25, 0.25, 0.2])
        self.age = rng.choice(6, n, p=[0.12, 0.24, 0.22, 0.18, 0.14, 0.10])
        ids = np.arange(n, dtype=np.int64) + index * _MAX_BLOCK
        self.ids = ids

        plan_activity = np.array([0.8, 1.05, 1.45])[self.plan]
        self.activity = cfg.activity_per_day * plan_activity * rng.gamma(4.0, 0.25, n)
        self.app_affinity = np.array([0.25, 0.15, 0.05, -0.05, -0.15, -0.2])[self.age]

        # disengagement onset: exponential waiting time; new customers are riskier for their first 90 days
        hazard = (
            0.0016
            * np.array([1.7, 1.0, 0.45])[self.plan]
            * np.array([1.5, 1.2, 1.0, 0.9, 0.8, 0.75])[self.age]
            * np.array([1.0, 1.25, 0.9, 1.0])[self.region]
        )
        start_from = np.maximum(signup, 0.0)
        tenure_at_start = start_from - signup
        early = np.clip(90 - tenure_at_start, 0, None)
        wait_early = rng.exponential(1.0 / (hazard * 1.8))
        wait_late = rng.exponential(1.0 / hazard)
        self.onset = np.where(wait_early < early, start_from + wait_early, start_from + early + wait_late)
        # after onset: churn after ~4 weeks, or (15%) recover at that time instead
        delay = rng.gamma(3.0, 10.0, n)
        self.recovers = rng.random(n) < 0.15
        self.decay_days = rng.uniform(10, 30, n)
        # some leavers first use up what they paid for: a burst of activity before the decline
        self.burst = rng.random(n) < 0.5
        churn_signalled = np.where(self.recovers, np.inf, self.onset + delay)
        self.recover_day = np.where(self.recovers, self.onset + delay, np.inf)
        # abrupt churn: no behavioural warning, but concentrated in segments (young customers in the south, older
        # customers in the north) that only interactions of profile features reveal
        risky = ((self.age <= 1) & (self.region == 1)) | ((self.age >= 4) & (self.region == 0))
        abrupt_hazard = 0.0004 * np.array([1.4, 1.0, 0.7])[self.plan] * np.where(risky, 7.0, 1.0)
        churn_abrupt = start_from + rng.exponential(1.0 / abrupt_hazard)
        self.churn = np.minimum(churn_signalled, churn_abrupt)

    def engagement(self, day: int) -> np.ndarray:
        """Activity multiplier on `day`: 1 when engaged, decaying after onset, back to 1 after recovery."""
        since = day - self.onset
        bursting = self.burst & (since >= 0) & (since < 10)
        decayed = np.exp(-np.clip(since - np.where(self.burst, 10, 0), 0, None) / self.decay_days)
        engaged = (since < 0) | (day >= self.recover_day)
        return np.where(engaged, 1.0, np.where(bursting, 3.0, np.maximum(decayed, 0.03)))


def _id_strings(prefix: str, numbers: np.ndarray):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers, pa.int64()), pa.string()), "")


def _customer_ids(numbers: np.ndarray):
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), 9, "0")
    return pc.binary_join_element_wise("C", digits, "")


def _timestamps(day_us: int, fractions: np.ndarray):
    import pyarrow as pa

    values = day_us + (fractions * _DAY_US).astype(np.int64)
    return pa.array(values, pa.timestamp("us", tz="UTC"))


def generate(
    cfg: GeneratorConfig,
    landing: Landing,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> GenerationSummary:
    """Land `cfg.days` daily partitions of the four demo sources into `landing`.

    Skips the work when the same config was already landed there (marker file), unless `force`.
    """
    import pyarrow as pa

    started = time.perf_counter()
    summary = GenerationSummary(landing.url, cfg.start, cfg.end)
    marker_rows = _read_marker(landing)
    if not force and marker_rows is not None and marker_rows.get("config") == json.loads(cfg.to_json()):
        summary.rows, summary.skipped = marker_rows["rows"], True
        return summary

    schemas = _schemas()
    rows = dict.fromkeys(SOURCES, 0)
    n_blocks = math.ceil(cfg.customers / cfg.block_size)
    epoch_us = int(dt.datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=dt.UTC).timestamp() * 1e6)
    drift_day = (cfg.drift_start - cfg.start).days if cfg.drift_start else None
    for b in range(n_blocks):
        n_initial = min(cfg.block_size, cfg.customers - b * cfg.block_size)
        blk = _Block(cfg, b, n_initial)
        rng = blk.rng
        ids = _customer_ids(blk.ids)
        part = f"part-{b:05d}.parquet"
        event_seq = {"transactions": 0, "support_tickets": 0}
        for d in range(cfg.days):
            day = cfg.start + dt.timedelta(days=d)
            day_us = epoch_us + d * _DAY_US
            drift = cfg.drift_strength if drift_day is not None and d >= drift_day else 0.0

            # customers whose record lands today (the whole initial base lands on the first day)
            new = np.flatnonzero(blk.landing_day == d)
            signup_us = (epoch_us + blk.signup[new] * _DAY_US).astype(np.int64)
            tables = {
                "customers": pa.table(
                    [ids.take(pa.array(new)), pa.array(signup_us, pa.timestamp("us", tz="UTC")),
                     pa.array(np.array(PLANS)[blk.plan[new]]), pa.array(np.array(REGIONS)[blk.region[new]]),
                     pa.array(np.array(AGE_BANDS)[blk.age[new]])],
                    schema=schemas["customers"],
                )
            }

            active = (blk.signup < d) & (blk.churn > d + 1)  # alive for the whole day
            weekday = (cfg.start + dt.timedelta(days=d)).weekday()
            season = 1.15 if weekday >= 5 else 0.94
            engagement = blk.engagement(d)
            # drift also lifts everyone's activity (a promotion, a new app): counts, trends and recency move too
            rate = np.where(active, blk.activity * engagement * season * (1 + 0.4 * drift), 0.0)
            counts = rng.poisson(rate)
            who = np.repeat(np.arange(blk.n), counts)
            k = len(who)
            cat_p = np.array([0.30, 0.10, 0.12, 0.06, 0.12, 0.12, 0.08, 0.10])
            categories = np.array(CATEGORIES + [DRIFT_CATEGORY])
            if drift:
                share_new = min(0.03 * drift, 0.08)  # stays under the spec's 10% tolerance for new categories
                cat_p = np.append(cat_p * (1 - share_new), share_new)
            else:
                cat_p = np.append(cat_p, 0.0)
            cat = rng.choice(len(categories), k, p=cat_p)
            base_amount = np.array([45, 320, 90, 600, 60, 150, 70, 110, 400])[cat]
            plan_spend = np.array([0.85, 1.0, 1.4])[blk.plan[who]]
            amount = np.round(base_amount * plan_spend * rng.lognormal(0.0, 0.6, k) * (1 + 0.35 * drift), 2)
            amount = np.clip(amount, 0.01, 24_999.0)
            app_p = np.clip(0.35 + blk.app_affinity[who] + 0.25 * drift, 0.02, 0.95)
            store_p = (1 - app_p) * 0.45
            u = rng.random(k)
            channel = np.where(u < app_p, 1, np.where(u < app_p + store_p, 2, 0))
            seq = np.arange(event_seq["transactions"], event_seq["transactions"] + k) + b * 10**11
            event_seq["transactions"] += k
            tables["transactions"] = pa.table(
                [_id_strings("T", seq), ids.take(pa.array(who)), _timestamps(day_us, rng.random(k)),
                 pa.array(amount), pa.array(np.array(CHANNELS)[channel]), pa.array(categories[cat])],
                schema=schemas["transactions"],
            )

            disengaged = (d >= blk.onset) & (d < blk.recover_day) & active
            ticket_rate = np.where(active, np.where(disengaged, 0.06, 0.006), 0.0)
            t_counts = rng.poisson(ticket_rate)
            t_who = np.repeat(np.arange(blk.n), t_counts)
            m = len(t_who)
            normal_p, unhappy_p = [0.35, 0.35, 0.27, 0.03], [0.35, 0.15, 0.15, 0.35]
            reason = np.where(
                disengaged[t_who], rng.choice(4, m, p=unhappy_p), rng.choice(4, m, p=normal_p)
            )
            t_seq = np.arange(event_seq["support_tickets"], event_seq["support_tickets"] + m) + b * 10**11
            event_seq["support_tickets"] += m
            tables["support_tickets"] = pa.table(
                [_id_strings("K", t_seq), ids.take(pa.array(t_who)), _timestamps(day_us, rng.random(m)),
                 pa.array(np.array(TICKET_REASONS)[reason])],
                schema=schemas["support_tickets"],
            )

            churned = np.flatnonzero((np.floor(blk.churn) == d) & (blk.signup < blk.churn))
            churn_us = (epoch_us + np.maximum(blk.churn[churned], blk.signup[churned] + 1e-3) * _DAY_US).astype(np.int64)
            tables["churn_events"] = pa.table(
                [ids.take(pa.array(churned)), pa.array(churn_us, pa.timestamp("us", tz="UTC"))],
                schema=schemas["churn_events"],
            )

            for source, table in tables.items():
                landing.write_partition_file(source, day, part, table)
                rows[source] += table.num_rows
                summary.files += 1
            if progress and ((d + 1) % 30 == 0 or d == cfg.days - 1):
                progress(
                    f"block {b + 1}/{n_blocks}: day {d + 1}/{cfg.days} ({day}), "
                    f"{rows['transactions']:,} transactions so far"
                )
        del blk, rng, ids, tables  # free this block before the next one is drawn: peak memory = one block
    summary.rows = rows
    summary.seconds = time.perf_counter() - started
    _write_marker(landing, cfg, rows)
    return summary


_MARKER = "_generated.json"


def _read_marker(landing: Landing) -> dict | None:
    return landing.read_marker(_MARKER)


def _write_marker(landing: Landing, cfg: GeneratorConfig, rows: dict[str, int]) -> None:
    landing.write_marker(_MARKER, {"config": json.loads(cfg.to_json()), "rows": rows})
