"""Deterministic synthetic card-fraud data (issue 17), landed as daily Parquet partitions.

Sources (all timestamps UTC, microseconds; cardholders live on UTC, so UTC hour = local hour):
  cards              entity: a bulk first partition, then each new card on the day it opens
  merchants          entity: same pattern; merchants created on day D are used from D+1 (drift ring: from D)
  card_transactions  events: about `transactions_per_day` a day, one partition per day of event time, sorted
  chargebacks        events: landed in the partition of `chargeback_ts`, days to weeks after the transaction

Legitimate behaviour is per card, drawn once from seeded per-card arrays (no per-event history is kept): a daily
rate (gamma, mean 1, so some cards are nearly dormant and some busy), a typical amount (lognormal with a
card-specific median and spread), 2-8 usual merchants near home it keeps returning to (the first ones more
often) and an exploration probability for other merchants, a time-of-day profile (a peak hour and a spread;
a few night owls), its own devices for online purchases and a contactless habit.

Fraud (`fraud_rate` of the transactions, ground truth only in the debug files, see `generate_fraud_data`), four
mechanisms, every fraud episode starting at night (0-5 h) far more often than legitimate spending does:
  card_testing      a burst of 3-8 small amounts (mostly under 5.00) at one online merchant, tens of seconds
                    apart, on a fraudster's device; 60% end with a large purchase at a risky online merchant
                    some minutes later. Small tests are often never charged back (cardholders miss them).
  account_takeover  1-3 online purchases from a device the card never used, at merchants drawn by fraud
                    risk (risky categories, foreign merchants: almost never one of the card's usual ones), for
                    about 8 times the card's typical amount.
  lost_stolen       a stolen physical card: 2-5 card-present purchases or ATM withdrawals within hours,
                    contactless under 100 or keyed in by hand, at merchants drawn by fraud risk.
  ring              colluding or compromised merchants: each ring is a few merchants that, for 1-3 weeks,
                    charge many different victims' cards; their chargeback rate becomes visible only as the
                    chargebacks mature.
Risky categories (electronics, travel, gift_cards, gambling, crypto) weigh 6-12 times more when fraudsters pick a
merchant than an ordinary category, and much less for legitimate spending.

Chargebacks: a fraud is charged back after a lognormal delay (median `chargeback_median_days`, clipped to 1-60
days) except `never_charged_back` of them (half of the card tests under 5.00). A small share of legitimate
transactions (`dispute_rate`, three times as likely online) is disputed too: half as "friendly fraud" (a fraud reason
on the cardholder's own purchase: label noise no model can remove), half as service disputes.

Drift (`drift_start`, `drift_strength` s): from that day legitimate amounts rise by 30%*s, cardholders explore
more and more online, and use contactless more; the fraud mix moves to online fraud (card testing and account
takeover up, lost/stolen down) and a new ring of brand-new foreign online merchants, created that day, starts.
Days before `drift_start` are identical with and without drift.

Determinism and memory: every day draws from its own seeded stream, so the same config gives byte-identical
files and a shorter run is a prefix of a longer one. State across days is the per-card and per-merchant arrays
(tens of bytes each) and the chargebacks not yet due (at most 60 days of frauds); each day is generated, written
and freed before the next, so peak memory grows with `transactions_per_day` and `cards`, not with `days` (about
480 MB peak RSS at 400,000 cards and 1,000,000 transactions a day; `python -m batchml.fraud_data` measures it).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from batchml.storage import Landing

log = logging.getLogger(__name__)

SOURCES = ("cards", "merchants", "card_transactions", "chargebacks")
CARD_TYPES = ("debit", "credit", "prepaid")
REGIONS = ("north", "south", "east", "west", "central")
HOME_COUNTRY = "GB"
COUNTRIES = ("GB", "IE", "FR", "DE", "NL", "ES", "US", "CN", "AE", "NG")
CHANNELS = ("pos", "online", "atm")
ENTRY_MODES = ("chip", "contactless", "manual", "ecommerce")
CHARGEBACK_REASONS = ("fraud_card_present", "fraud_card_not_present", "not_received", "not_as_described", "duplicate")
PATTERNS = ("card_testing", "account_takeover", "lost_stolen", "ring")

# name, share of merchants, share of them online, weight as a usual merchant, weight when exploring,
# amount multiplier (x the card's typical amount), weight when fraudsters pick a merchant
_CATEGORY_TABLE = (
    ("grocery", 0.16, 0.05, 3.0, 1.0, 1.0, 0.3),
    ("restaurants", 0.16, 0.02, 1.5, 1.5, 0.9, 0.3),
    ("fuel", 0.06, 0.0, 2.0, 0.8, 1.4, 0.8),
    ("retail", 0.14, 0.25, 0.8, 1.2, 1.6, 1.0),
    ("pharmacy", 0.05, 0.05, 1.0, 0.6, 0.8, 0.3),
    ("transport", 0.04, 0.5, 1.5, 1.0, 0.5, 0.4),
    ("utilities", 0.03, 1.0, 1.0, 0.1, 2.5, 0.1),
    ("entertainment", 0.06, 0.6, 0.6, 1.0, 0.9, 0.8),
    ("online_retail", 0.08, 1.0, 1.0, 1.5, 1.3, 1.5),
    ("digital_goods", 0.04, 1.0, 0.5, 0.8, 0.4, 2.0),
    ("cash", 0.05, 0.0, 0.8, 0.4, 3.0, 1.5),  # ATMs: channel atm
    ("electronics", 0.04, 0.5, 0.05, 0.6, 5.0, 8.0),
    ("travel", 0.03, 0.8, 0.02, 0.5, 8.0, 6.0),
    ("gift_cards", 0.02, 0.7, 0.02, 0.3, 2.0, 12.0),
    ("gambling", 0.02, 1.0, 0.1, 0.4, 1.5, 8.0),
    ("crypto", 0.02, 1.0, 0.02, 0.2, 4.0, 12.0),
)
CATEGORIES = tuple(row[0] for row in _CATEGORY_TABLE)
RISKY_CATEGORIES = ("electronics", "travel", "gift_cards", "gambling", "crypto")
_CAT_SHARE, _CAT_ONLINE, _CAT_USUAL, _CAT_EXPLORE, _CAT_AMOUNT, _CAT_FRAUD = (
    np.array([row[i] for row in _CATEGORY_TABLE]) for i in range(1, 7)
)
_CASH = CATEGORIES.index("cash")
# where fraudsters test cards: cheap online goods nobody checks
_CAT_TESTING = np.array([{"digital_goods": 5.0, "gift_cards": 3.0, "online_retail": 2.0, "entertainment": 1.0,
                          "gambling": 1.0}.get(c, 0.1) for c in CATEGORIES])
_DRIFT_RING_CATEGORIES = np.array([CATEGORIES.index(c) for c in ("crypto", "gift_cards", "digital_goods", "electronics")])

_REGION_P = np.array([0.2, 0.25, 0.2, 0.2, 0.15])
_FOREIGN_P = np.array([0.15, 0.15, 0.15, 0.1, 0.1, 0.15, 0.1, 0.05, 0.05])  # online merchants abroad: COUNTRIES[1:]
_WEEKDAY = np.array([0.97, 0.97, 0.99, 1.0, 1.08, 1.06, 0.93])  # Monday..Sunday, mean 1
_POS, _ONLINE, _ATM = 0, 1, 2
_CHIP, _CONTACTLESS, _MANUAL, _ECOMMERCE = 0, 1, 2, 3
_K_USUAL = 8  # at most this many usual merchants per card

# Fraud mix (share of fraud transactions per pattern) and mean transactions per episode, to turn volumes into
# episode counts: card tests 3-8 (+0.6 large purchase), takeover 1-3, stolen card 2-5, ring 1 per transaction.
_PATTERN_SHARE = np.array([0.25, 0.25, 0.20, 0.30])
_EPISODE_SIZE = np.array([6.1, 2.0, 3.5, 1.0])
_NIGHT_P = np.array([0.45, 0.35, 0.50, 0.30])  # probability that an episode starts between 0 and 5 h

_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
_MIN_US = 60_000_000
_SEC_US = 1_000_000
_TX_PER_DAY_IDS = 10**8  # transaction numbers: day * 1e8 + rank within the day
_CB_PER_DAY_IDS = 10**7
_DEVICE_MASK = (1 << 40) - 1
_FRAUD_DEVICE_BASE = 1 << 39  # legit: card * 4 + slot (< 2^29) or random in [2^29, 2^39); fraud: 2^39 + j
_MARKER = "_generated_fraud.json"
TRUTH_SOURCE = "fraud_truth"


@dataclass(frozen=True)
class FraudDataConfig:
    """What to generate. Equal configs give byte-identical files. The defaults are the benchmark's scale;
    `DEFAULT_CONFIG` is the small one for tests and the demo."""

    cards: int = 400_000
    """Cards at the start; new ones open every day (`new_card_rate` of this a day)."""
    merchants: int = 40_000
    transactions_per_day: int = 1_000_000
    """Expected transactions a day (legitimate + fraud), before the weekday pattern (+-8%) and Poisson noise."""
    start: dt.date = dt.date(2026, 1, 1)
    days: int = 40
    seed: int = 11
    fraud_rate: float = 0.002
    """Share of transactions that are fraud (0.1-0.5% is realistic)."""
    drift_start: dt.date | None = None
    drift_strength: float = 1.0
    dispute_rate: float = 0.0002
    """Share of legitimate transactions charged back anyway (friendly fraud and service disputes), online ones
    three times as often as card-present ones."""
    never_charged_back: float = 0.05
    """Share of frauds nobody disputes (half of card tests under 5.00 are never disputed, whatever this is)."""
    chargeback_median_days: float = 10.0
    new_card_rate: float = 0.0005
    new_merchant_rate: float = 0.001

    def __post_init__(self):
        if self.cards < 1 or self.days < 1 or self.transactions_per_day < 1:
            raise ValueError("cards, days and transactions_per_day must be at least 1")
        if self.cards >= 10**8:
            raise ValueError("cards must be below 100,000,000")
        if not 100 <= self.merchants < 10**7:
            raise ValueError("merchants must be between 100 and 9,999,999")
        if self.transactions_per_day >= _TX_PER_DAY_IDS // 2:
            raise ValueError(f"transactions_per_day must be below {_TX_PER_DAY_IDS // 2:,}")
        if not 0 < self.fraud_rate <= 0.05:
            raise ValueError("fraud_rate must be in (0, 0.05]")
        if not 0 <= self.dispute_rate <= 0.01 or not 0 <= self.never_charged_back < 1:
            raise ValueError("dispute_rate must be in [0, 0.01] and never_charged_back in [0, 1)")
        if not 1 <= self.chargeback_median_days <= 30:
            raise ValueError("chargeback_median_days must be between 1 and 30")
        if self.drift_strength < 0:
            raise ValueError("drift_strength must be >= 0")

    @property
    def end(self) -> dt.date:
        """Last day generated (included)."""
        return self.start + dt.timedelta(days=self.days - 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)


DEFAULT_CONFIG = FraudDataConfig(cards=2_000, merchants=300, transactions_per_day=5_000, days=45)
"""Small data set for tests and the demo: 225,000 transactions, about 450 frauds, in a couple of seconds."""


@dataclass
class FraudDataSummary:
    landing_url: str
    first_day: dt.date
    last_day: dt.date
    rows: dict[str, int] = field(default_factory=dict)
    fraud_transactions: int = 0
    fraud_rate: float = 0.0
    chargebacks: int = 0
    """Chargebacks landed (due within the generated days); `fraud_chargebacks` of them are on frauds."""
    fraud_chargebacks: int = 0
    files: int = 0
    seconds: float = 0.0
    skipped: bool = False
    truth_dir: str | None = None


def schemas() -> dict:
    """Arrow schema of each landed source, and of the ground-truth debug file (`TRUTH_SOURCE`)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    s = pa.string()
    return {
        "cards": pa.schema([("card_id", s), ("customer_id", s), ("opened_ts", ts), ("card_type", s),
                            ("home_region", s), ("credit_limit", pa.float64())]),
        "merchants": pa.schema([("merchant_id", s), ("category", s), ("country", s), ("created_ts", ts)]),
        "card_transactions": pa.schema([("transaction_id", s), ("card_id", s), ("merchant_id", s), ("event_ts", ts),
                                        ("amount", pa.float64()), ("channel", s), ("entry_mode", s),
                                        ("device_id", s), ("merchant_category", s)]),
        "chargebacks": pa.schema([("chargeback_id", s), ("transaction_id", s), ("transaction_ts", ts), ("card_id", s),
                                  ("merchant_id", s), ("chargeback_ts", ts), ("reason", s)]),
        TRUTH_SOURCE: pa.schema([("transaction_id", s), ("card_id", s), ("merchant_id", s), ("event_ts", ts),
                                 ("amount", pa.float64()), ("pattern", s), ("episode_id", pa.int64()),
                                 ("ring_id", pa.int32()), ("chargeback_ts", ts)]),
    }


# Entities --------------------------------------------------------------------------------------------------------


class _Pool:
    """Weighted sampling of merchant indices: one cumulative sum, then a binary search per draw."""

    def __init__(self, weights: np.ndarray):
        if not weights.any():
            raise ValueError("empty merchant pool")
        self.cum = np.cumsum(weights)
        self.total = self.cum[-1]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        idx = np.searchsorted(self.cum, rng.random(n) * self.total, side="right")
        return np.minimum(idx, len(self.cum) - 1).astype(np.int32)


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _draw_merchants(rng: np.random.Generator, n: int, created_us: np.ndarray, created_day: int) -> dict:
    cat = rng.choice(len(CATEGORIES), n, p=_CAT_SHARE)
    channel = np.where(cat == _CASH, _ATM, np.where(rng.random(n) < _CAT_ONLINE[cat], _ONLINE, _POS))
    foreign = (channel == _ONLINE) & (rng.random(n) < 0.3)
    country = np.where(foreign, 1 + rng.choice(len(COUNTRIES) - 1, n, p=_FOREIGN_P), 0)
    region = np.where(channel == _ONLINE, -1, rng.choice(len(REGIONS), n, p=_REGION_P))  # online: national
    return {
        "cat": cat.astype(np.int8), "channel": channel.astype(np.int8), "country": country.astype(np.int8),
        "region": region.astype(np.int8), "pop": rng.lognormal(0.0, 1.1, n),
        "created_us": created_us.astype(np.int64), "created_day": np.full(n, created_day, np.int32),
    }


def _draw_cards(rng: np.random.Generator, n: int, open_us: np.ndarray, open_day: int, usual_pools: list[_Pool]) -> dict:
    """Per-card latent behaviour: everything a card does later is drawn from these arrays."""
    ctype = rng.choice(3, n, p=[0.55, 0.38, 0.07])
    region = rng.choice(len(REGIONS), n, p=_REGION_P)
    usual = np.empty((n, _K_USUAL), np.int32)
    for r, pool in enumerate(usual_pools):  # usual merchants: near home, or national online ones
        rows = np.flatnonzero(region == r)
        usual[rows] = pool.sample(rng, len(rows) * _K_USUAL).reshape(len(rows), _K_USUAL)
    kind = rng.random(n)  # time-of-day profile: daytime, evening, or night owl
    peak = np.where(kind < 0.85, np.clip(rng.normal(13.5, 2.5, n), 8, 19),
                    np.where(kind < 0.95, rng.normal(20.0, 1.0, n), rng.normal(1.0, 1.5, n) % 24))
    limit = np.select(
        [ctype == 1, ctype == 0],
        [np.clip(np.round(rng.lognormal(np.log(4000), 0.6, n), -2), 500, 50_000),
         rng.choice([500.0, 1000.0, 2000.0, 3000.0, 5000.0], n)],
        np.round(rng.uniform(50, 1000, n), -1),
    )
    return {
        "ctype": ctype.astype(np.int8), "region": region.astype(np.int8),
        "open_us": open_us.astype(np.int64), "open_day": np.full(n, open_day, np.int32), "limit": limit,
        "activity": rng.gamma(0.9, 1 / 0.9, n),
        "median": rng.lognormal(np.log(28.0), 0.55, n) * np.array([1.0, 1.3, 0.6])[ctype],
        "sigma": rng.uniform(0.35, 0.8, n),
        "explore": rng.beta(2.0, 9.0, n),
        "n_usual": (2 + rng.binomial(6, 0.5, n)).astype(np.int8),
        "usual": usual,
        "peak": peak, "spread": rng.uniform(1.5, 4.0, n),
        "n_dev": (1 + (rng.random(n) < 0.4)).astype(np.int8),
        "contactless": rng.uniform(0.3, 0.95, n),
    }


class _World:
    """Cards, merchants and rings of the whole period, drawn once; each day's new entities from that day's stream
    (so a shorter run is a prefix of a longer one, and drift draws never touch the days before it)."""

    def __init__(self, cfg: FraudDataConfig):
        import pyarrow as pa

        self.cfg = cfg
        self.epoch_us = int(dt.datetime(cfg.start.year, cfg.start.month, cfg.start.day, tzinfo=dt.UTC).timestamp() * 1e6)
        drift_day = (cfg.drift_start - cfg.start).days if cfg.drift_start else None
        self.drift_day = drift_day if drift_day is not None and drift_day < cfg.days else None
        if self.drift_day is not None and self.drift_day < 0:
            self.drift_day = 0

        rng = np.random.default_rng([cfg.seed, 0, 0])
        parts = [_draw_merchants(rng, cfg.merchants, self.epoch_us - rng.uniform(30, 3650, cfg.merchants) * _DAY_US, -1)]
        for d in range(cfg.days):
            r = np.random.default_rng([cfg.seed, 3, d])
            k = int(r.poisson(cfg.merchants * cfg.new_merchant_rate))
            parts.append(_draw_merchants(r, k, self.epoch_us + (d + r.random(k)) * _DAY_US, d))
        self.n_regular_merchants = sum(len(p["cat"]) for p in parts)
        if self.drift_day is not None:  # the drift ring: new foreign online merchants, created at midnight
            r = np.random.default_rng([cfg.seed, 5])
            k = max(3, cfg.merchants // 3000)
            m = _draw_merchants(r, k, np.full(k, self.epoch_us + self.drift_day * _DAY_US), self.drift_day)
            m["cat"] = r.choice(_DRIFT_RING_CATEGORIES, k).astype(np.int8)
            m["channel"][:] = _ONLINE
            m["region"][:] = -1
            m["country"] = (1 + r.choice(len(COUNTRIES) - 1, k, p=_FOREIGN_P)).astype(np.int8)
            m["pop"] *= 0.3
            parts.append(m)
        self.m = _concat(parts)
        n_m = len(self.m["cat"])

        initial = self.m["created_day"] < 0
        usual_pools = [
            _Pool(self.m["pop"] * _CAT_USUAL[self.m["cat"]] * initial * (self.m["country"] == 0)
                  * ((self.m["region"] == r) | (self.m["region"] == -1)))
            for r in range(len(REGIONS))
        ]
        rng = np.random.default_rng([cfg.seed, 0, 1])
        cparts = [_draw_cards(rng, cfg.cards, self.epoch_us - rng.uniform(30, 6 * 365, cfg.cards) * _DAY_US, -1,
                              usual_pools)]
        for d in range(cfg.days):
            r = np.random.default_rng([cfg.seed, 2, d])
            k = int(r.poisson(cfg.cards * cfg.new_card_rate))
            cparts.append(_draw_cards(r, k, self.epoch_us + (d + r.random(k)) * _DAY_US, d, usual_pools))
        self.c = _concat(cparts)
        n_c = len(self.c["ctype"])
        self.n_fraud_devices = max(20, cfg.cards // 2000)

        # rings: sequential schedule (a prefix for shorter runs), members drawn from each ring's own stream
        rng = np.random.default_rng([cfg.seed, 4])
        self.rings: list[tuple[int, int, int, np.ndarray, float]] = []  # (id, first day, last day, members, weight)
        start = rng.uniform(0, 8)
        online_bonus = np.where(self.m["channel"] == _ONLINE, 3.0, 1.0)
        # small merchants rather than big chains: a colluding shop, a breached web shop
        ring_w = (self.m["pop"] ** -0.5 * online_bonus * initial * (self.m["cat"] != _CASH)
                  * (self.m["cat"] != CATEGORIES.index("utilities")))
        ring_pool = _Pool(ring_w)
        k_max = max(3, cfg.merchants // 4000)
        while start < cfg.days:
            duration = rng.uniform(7, 21)
            gap = rng.uniform(12, 28)
            rid = len(self.rings)
            r = np.random.default_rng([cfg.seed, 4, rid])
            members = np.unique(ring_pool.sample(r, int(r.integers(3, 3 + k_max + 1))))
            self.rings.append((rid, int(start), int(start + duration), members, 1.0))
            start += gap
        if self.drift_day is not None:
            members = np.arange(self.n_regular_merchants, n_m, dtype=np.int32)
            self.rings.append((100, self.drift_day, cfg.days - 1, members, 2.0 * cfg.drift_strength))

        self.card_ids = _ids("K", np.arange(n_c), 9)
        self.customer_ids = _ids("U", self._customers(n_c), 9)
        self.merchant_ids = _ids("M", np.arange(n_m), 7)
        self.categories = pa.array(CATEGORIES)
        self.channels, self.entry_modes = pa.array(CHANNELS), pa.array(ENTRY_MODES)
        self.reasons, self.patterns = pa.array(CHARGEBACK_REASONS), pa.array(PATTERNS)
        self.new_card_days = self.c["open_day"][cfg.cards:]
        log.info("fraud data world: %d cards, %d merchants, %d rings", n_c, n_m, len(self.rings))

    def _customers(self, n: int) -> np.ndarray:
        """Customer numbers: about 13% of the initial customers hold two consecutive cards; new cards, new customers."""
        base = self.cfg.cards
        idx = np.arange(n)
        first = np.floor(np.minimum(idx, base - 1) * 0.87).astype(np.int64)
        return np.where(idx < base, first, first[-1] + 1 + idx - base) if n else first

    def active_cards(self, d: int) -> int:
        """Cards open before day `d` are the prefix [0, n): new cards are appended in the order they open."""
        return self.cfg.cards + int(np.searchsorted(self.new_card_days, d, side="left"))

    def drift(self, d: int) -> float:
        return self.cfg.drift_strength if self.drift_day is not None and d >= self.drift_day else 0.0


def _ids(prefix: str, numbers: np.ndarray, width: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _device_numbers(preimage: np.ndarray) -> np.ndarray:
    """A bijection of [0, 2^40): device ids look random, legit and fraud devices never collide or differ in range."""
    return ((preimage.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_DEVICE_MASK)).astype(np.int64)


# One day ---------------------------------------------------------------------------------------------------------


@dataclass
class _Events:
    """Transactions of one day as parallel arrays (time in us since the day's midnight)."""

    time: np.ndarray
    card: np.ndarray
    merchant: np.ndarray
    amount: np.ndarray
    entry: np.ndarray
    device: np.ndarray  # -1: none (card present)
    pattern: np.ndarray  # -1: legitimate
    episode: np.ndarray
    ring: np.ndarray  # -1: no ring

    @staticmethod
    def concat(parts: list[_Events]) -> _Events:
        return _Events(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Events.__dataclass_fields__))

    def take(self, order: np.ndarray) -> _Events:
        return _Events(*(getattr(self, f)[order] for f in _Events.__dataclass_fields__))


def _legit(w: _World, d: int, rng: np.random.Generator, pools: dict, expected: float) -> _Events:
    """Legitimate spending: each card's daily count, usual merchants, amounts and hours from its own arrays."""
    c, m = w.c, w.m
    s = w.drift(d)
    n_act = w.active_cards(d)
    activity = c["activity"][:n_act]
    counts = rng.poisson(activity * (expected / activity.sum()))
    who = np.repeat(np.arange(n_act, dtype=np.int32), counts)
    n = len(who)
    # merchant: one of the card's usual ones (the first slots more often), or a new one by popularity
    n_usual = c["n_usual"][who]
    slot = np.minimum((n_usual * rng.random(n) ** 1.8).astype(np.int64), n_usual - 1)
    merchant = c["usual"][who, slot]
    explore = rng.random(n) < np.minimum(c["explore"][who] + 0.1 * s, 0.9)
    merchant[explore] = pools["explore"].sample(rng, int(explore.sum()))
    cat = m["cat"][merchant]
    channel = m["channel"][merchant]
    hour = (c["peak"][who] + c["spread"][who] * rng.standard_normal(n)) % 24.0
    time_us = np.clip((hour * _HOUR_US).astype(np.int64), 1, _DAY_US - 1)
    amount = c["median"][who] * _CAT_AMOUNT[cat] * np.exp(c["sigma"][who] * rng.standard_normal(n)) * (1 + 0.3 * s)
    amount = np.where(channel == _ATM, np.maximum(10.0, np.round(amount / 10) * 10), np.round(amount, 2))
    amount = np.clip(amount, 0.01, 50_000.0)
    u = rng.random(n)
    contactless = (amount <= 100) & (u < np.minimum(c["contactless"][who] + 0.15 * s, 0.99))
    entry = np.where(channel == _ONLINE, _ECOMMERCE,
                     np.where(channel == _ATM, _CHIP,
                              np.where(u > 0.997, _MANUAL, np.where(contactless, _CONTACTLESS, _CHIP))))
    # online: the card's own one or two devices; 2% of the time its new phone (slot 2, known from then on), 3% an
    # unknown fingerprint (cleared cookies, a borrowed laptop: a new device every time, as in real device data)
    v = rng.random(n)
    dev_slot = np.where(v < 0.02, 2, np.where((c["n_dev"][who] == 2) & (v > 0.6), 1, 0))
    preimage = np.where(v > 0.97, rng.integers(1 << 29, _FRAUD_DEVICE_BASE, n), who.astype(np.int64) * 4 + dev_slot)
    device = np.where(channel == _ONLINE, _device_numbers(preimage), -1)
    minus = np.full(n, -1, np.int8)
    return _Events(time_us, who, merchant, amount, entry.astype(np.int8), device, minus, np.full(n, -1, np.int64),
                   minus.astype(np.int16))


def _start_times(rng: np.random.Generator, n: int, night_p: float) -> np.ndarray:
    """Fraud episode start hours: `night_p` of them between 0 and 5 h, the rest around the evening."""
    hour = np.where(rng.random(n) < night_p, rng.uniform(0, 5, n), rng.normal(17, 4.5, n) % 24)
    return (hour * _HOUR_US).astype(np.int64)


def _place(t0: np.ndarray, ep: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Absolute times of episode events; an episode that would run past midnight starts earlier instead."""
    dur = np.zeros(len(t0), np.int64)
    np.maximum.at(dur, ep, offsets)
    start = np.clip(np.minimum(t0, _DAY_US - 2 - dur), 1, None)
    return start[ep] + offsets


def _episodes(sizes: np.ndarray, gaps: np.ndarray, first_gap_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    """(episode of each event, offset of each event from its episode's start) from per-event gaps."""
    ep = np.repeat(np.arange(len(sizes)), sizes)
    starts = np.cumsum(sizes) - sizes
    if first_gap_zero:
        gaps = gaps.copy()
        gaps[starts] = 0.0
    cs = np.cumsum(gaps)
    return ep, (cs - (cs[starts] - gaps[starts])[ep]).astype(np.int64)


def _fraud(w: _World, d: int, rng: np.random.Generator, pools: dict, volume: float) -> _Events:
    """The four fraud mechanisms (see the module docstring), about `volume` transactions in all."""
    c, m = w.c, w.m
    s = w.drift(d)
    n_act = w.active_cards(d)
    rings = [r for r in w.rings if r[1] <= d <= r[2]]
    share = _PATTERN_SHARE * np.array([1 + 0.6 * s, 1 + 0.6 * s, max(0.2, 1 - 0.6 * s), 1.0])
    if not rings:
        share[3] = 0.0
    elif any(r[0] == 100 for r in rings):
        share[3] *= 1 + 0.3 * s
    share = share / share.sum()
    n_ep = rng.poisson(share * volume / _EPISODE_SIZE)
    parts: list[_Events] = []
    ep_base = d * 10**6

    def fraud_devices(k):
        return _device_numbers(_FRAUD_DEVICE_BASE + rng.integers(0, w.n_fraud_devices, k))

    def events(pattern, t, card, merchant, amount, entry, device, episode, ring=None):
        k = len(t)
        parts.append(_Events(t, card.astype(np.int32), merchant.astype(np.int32), amount, entry.astype(np.int8),
                             device, np.full(k, pattern, np.int8), ep_base + episode,
                             np.full(k, -1, np.int16) if ring is None else ring.astype(np.int16)))

    # card testing: small amounts at one online merchant seconds apart, then perhaps one large risky purchase
    e = int(n_ep[0])
    if e:
        tests = rng.integers(3, 9, e)
        big = rng.random(e) < 0.6
        sizes = tests + big
        ep, off = _episodes(sizes, rng.exponential(45 * _SEC_US, sizes.sum()) + 5 * _SEC_US, False)
        is_big = np.zeros(sizes.sum(), bool)
        is_big[np.cumsum(sizes)[big] - 1] = True
        off = off + np.where(is_big, _MIN_US + rng.exponential(15 * _MIN_US, len(off)), 0).astype(np.int64)
        t = _place(_start_times(rng, e, _NIGHT_P[0]), ep, off)
        card = rng.integers(0, n_act, e)[ep]
        merchant = np.where(is_big, pools["risky_online"].sample(rng, len(off)), pools["testing"].sample(rng, e)[ep])
        small = np.where(rng.random(len(off)) < 0.35, 1.0, np.round(rng.uniform(0.5, 4.99, len(off)), 2))
        amount = np.where(is_big, np.round(rng.lognormal(np.log(450), 0.6, len(off)), 2), small)
        events(0, t, card, merchant, amount, np.full(len(t), _ECOMMERCE), fraud_devices(e)[ep], ep)

    # account takeover: a device the card never used, never-seen risky merchants, amounts far above its usual
    e = int(n_ep[1])
    if e:
        sizes = rng.integers(1, 4, e)
        ep, off = _episodes(sizes, rng.uniform(2, 60, sizes.sum()) * _MIN_US, True)
        t = _place(_start_times(rng, e, _NIGHT_P[1]), ep, off)
        card = rng.integers(0, n_act, e)[ep]
        merchant = pools["risky_online"].sample(rng, len(t))
        amount = np.round(np.maximum(50.0, c["median"][card] * rng.lognormal(np.log(8), 0.5, len(t))), 2)
        events(1, t, card, merchant, amount, np.full(len(t), _ECOMMERCE), fraud_devices(e)[ep], ep)

    # lost or stolen card: card-present purchases and withdrawals within hours
    e = int(n_ep[2])
    if e:
        sizes = rng.integers(2, 6, e)
        ep, off = _episodes(sizes, rng.uniform(3, 40, sizes.sum()) * _MIN_US, True)
        t = _place(_start_times(rng, e, _NIGHT_P[2]), ep, off)
        card = rng.integers(0, n_act, e)[ep]
        merchant = pools["card_present"].sample(rng, len(t))
        atm = m["channel"][merchant] == _ATM
        amount = rng.lognormal(np.log(110), 0.8, len(t))
        amount = np.where(atm, np.clip(np.round(amount * 2 / 20) * 20, 20, 500), np.round(amount, 2))
        u = rng.random(len(t))
        entry = np.where(atm, _CHIP, np.where(u < 0.2, _MANUAL,
                                              np.where((amount <= 100) & (u < 0.9), _CONTACTLESS, _CHIP)))
        events(2, t, card, merchant, amount, entry, np.full(len(t), -1, np.int64), ep)

    # rings: many victims' cards charged at the few merchants of each active ring
    k = int(n_ep[3])
    if k:
        weights = np.array([r[4] for r in rings])
        which = rng.choice(len(rings), k, p=weights / weights.sum())
        sizes_r = np.array([len(r[3]) for r in rings])
        members = np.concatenate([r[3] for r in rings])
        merchant = members[(np.cumsum(sizes_r) - sizes_r)[which] + (rng.random(k) * sizes_r[which]).astype(np.int64)]
        t = np.clip(_start_times(rng, k, _NIGHT_P[3]), 1, _DAY_US - 1)
        card = rng.integers(0, n_act, k)
        amount = np.round(rng.lognormal(np.log(220), 0.7, k), 2)
        online = m["channel"][merchant] == _ONLINE
        entry = np.where(online, _ECOMMERCE, np.where(rng.random(k) < 0.5, _MANUAL, _CHIP))
        device = np.where(online, fraud_devices(k), -1)
        ring_id = np.array([r[0] for r in rings])[which]
        events(3, t, card, merchant, amount, entry, device, np.arange(k) + 500_000, ring_id)
    return _Events.concat(parts) if parts else _no_events()


def _no_events() -> _Events:
    z = np.zeros(0, np.int64)
    return _Events(z, z.astype(np.int32), z.astype(np.int32), z.astype(float), z.astype(np.int8), z,
                   z.astype(np.int8), z, z.astype(np.int16))


def _pools(w: _World, d: int) -> dict[str, _Pool]:
    """Merchant pools of day `d`: only merchants created before it (the drift ring's from its first day)."""
    m = w.m
    s = w.drift(d)
    ok = m["created_day"] < d
    online = m["channel"] == _ONLINE
    domestic = m["country"] == 0
    spread = m["pop"] ** 0.5  # fraudsters spread over more merchants than popularity alone would
    fraud_w = spread * _CAT_FRAUD[m["cat"]] * ok
    return {
        "explore": _Pool(m["pop"] * _CAT_EXPLORE[m["cat"]] * ok * np.where(domestic, 1.0, 0.15)
                         * np.where(online, 1 + 2 * s, 1.0)),
        "testing": _Pool(spread * _CAT_TESTING[m["cat"]] * ok * online),
        "risky_online": _Pool(fraud_w * online * np.where(domestic, 1.0, 2.0)),
        "card_present": _Pool(fraud_w * ~online),
    }


class _Pending:
    """Chargebacks drawn but not yet due: at most 60 days of them, whatever the number of days generated."""

    def __init__(self):
        self.a = {"due": np.zeros(0, np.int64), "tx": np.zeros(0, np.int64), "tx_us": np.zeros(0, np.int64),
                  "card": np.zeros(0, np.int32),
                  "merchant": np.zeros(0, np.int32), "reason": np.zeros(0, np.int8), "fraud": np.zeros(0, bool)}

    def add(self, **arrays):
        self.a = {k: np.concatenate([v, arrays[k].astype(v.dtype)]) for k, v in self.a.items()}

    def pop_before(self, until_us: int) -> dict[str, np.ndarray]:
        due = self.a["due"] < until_us
        out = {k: v[due] for k, v in self.a.items()}
        self.a = {k: v[~due] for k, v in self.a.items()}
        order = np.lexsort((out["tx"], out["due"]))
        return {k: v[order] for k, v in out.items()}


def _delays_us(rng: np.random.Generator, n: int, median_days: float) -> np.ndarray:
    days = np.clip(rng.lognormal(np.log(median_days), 0.6, n), 1.0, 60.0)
    return (days * _DAY_US).astype(np.int64)


def _tables(w: _World, d: int, ev: _Events, rng: np.random.Generator, pending: _Pending) -> tuple[dict, object, int]:
    """Arrow tables of day `d` (landed sources, the truth file) and the number of fraud chargebacks landed today.

    Draws today's chargebacks (queued until due) and takes the ones due today from the queue."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cfg, m, c = w.cfg, w.m, w.c
    sch = schemas()
    ts = pa.timestamp("us", tz="UTC")
    day_us = w.epoch_us + d * _DAY_US
    n = len(ev.time)
    tx_num = d * _TX_PER_DAY_IDS + np.arange(n, dtype=np.int64)
    tx_ids = _ids("T", tx_num, 12)
    merchant = pa.array(ev.merchant)
    channel = m["channel"][ev.merchant]
    device = pa.array(ev.device, mask=ev.device < 0)
    device_ids = pc.binary_join_element_wise("D", pc.utf8_lpad(pc.cast(device, pa.string()), 13, "0"), "")
    event_us = day_us + ev.time
    tables = {
        "card_transactions": pa.table(
            [tx_ids, w.card_ids.take(pa.array(ev.card)), w.merchant_ids.take(merchant), pa.array(event_us, ts),
             pa.array(ev.amount), w.channels.take(pa.array(channel)), w.entry_modes.take(pa.array(ev.entry)),
             device_ids, w.categories.take(pa.array(m["cat"][ev.merchant]))],
            schema=sch["card_transactions"],
        )
    }

    # chargebacks of today's frauds and disputes, queued until due
    fraud = np.flatnonzero(ev.pattern >= 0)
    tested_small = (ev.pattern[fraud] == 0) & (ev.amount[fraud] < 5)
    never = rng.random(len(fraud)) < np.where(tested_small, 0.5, cfg.never_charged_back)
    cb_due = np.where(never, -1, event_us[fraud] + _delays_us(rng, len(fraud), cfg.chargeback_median_days))
    fraud_reason = np.where(channel[fraud] == _ONLINE, 1, 0)
    legit = np.flatnonzero(ev.pattern < 0)
    p_dispute = cfg.dispute_rate * np.where(channel[legit] == _ONLINE, 1.6, 0.5)  # online 3x card-present, mean ~1
    disputed = legit[rng.random(len(legit)) < p_dispute]
    friendly = rng.random(len(disputed)) < 0.5  # a fraud reason on the cardholder's own purchase
    d_reason = np.where(friendly, np.where(channel[disputed] == _ONLINE, 1, 0), rng.choice([2, 3, 4], len(disputed)))
    charged = fraud[~never]
    pending.add(
        due=np.concatenate([cb_due[~never], event_us[disputed] + _delays_us(rng, len(disputed), 14.0)]),
        tx=np.concatenate([tx_num[charged], tx_num[disputed]]),
        tx_us=np.concatenate([event_us[charged], event_us[disputed]]),
        card=np.concatenate([ev.card[charged], ev.card[disputed]]),
        merchant=np.concatenate([ev.merchant[charged], ev.merchant[disputed]]),
        reason=np.concatenate([fraud_reason[~never], d_reason]),
        fraud=np.concatenate([np.ones(len(charged), bool), np.zeros(len(disputed), bool)]),
    )
    due = pending.pop_before(day_us + _DAY_US)
    k = len(due["tx"])
    tables["chargebacks"] = pa.table(
        [_ids("B", d * _CB_PER_DAY_IDS + np.arange(k), 11), _ids("T", due["tx"], 12), pa.array(due["tx_us"], ts),
         w.card_ids.take(pa.array(due["card"])), w.merchant_ids.take(pa.array(due["merchant"])),
         pa.array(due["due"], ts), w.reasons.take(pa.array(due["reason"]))],
        schema=sch["chargebacks"],
    )

    # entities landing today
    cards = np.flatnonzero(c["open_day"] == d) if d else np.flatnonzero(c["open_day"] <= 0)
    tables["cards"] = pa.table(
        [w.card_ids.take(pa.array(cards)), w.customer_ids.take(pa.array(cards)), pa.array(c["open_us"][cards], ts),
         pa.array(CARD_TYPES).take(pa.array(c["ctype"][cards])), pa.array(REGIONS).take(pa.array(c["region"][cards])),
         pa.array(c["limit"][cards])],
        schema=sch["cards"],
    )
    merchants = np.flatnonzero(m["created_day"] == d) if d else np.flatnonzero(m["created_day"] <= 0)
    tables["merchants"] = pa.table(
        [w.merchant_ids.take(pa.array(merchants)), w.categories.take(pa.array(m["cat"][merchants])),
         pa.array(COUNTRIES).take(pa.array(m["country"][merchants])), pa.array(m["created_us"][merchants], ts)],
        schema=sch["merchants"],
    )

    truth = pa.table(
        [tx_ids.take(pa.array(fraud)), w.card_ids.take(pa.array(ev.card[fraud])),
         w.merchant_ids.take(pa.array(ev.merchant[fraud])), pa.array(event_us[fraud], ts),
         pa.array(ev.amount[fraud]), w.patterns.take(pa.array(ev.pattern[fraud])), pa.array(ev.episode[fraud]),
         pa.array(ev.ring[fraud].astype(np.int32), mask=ev.ring[fraud] < 0), pa.array(cb_due, ts, mask=never)],
        schema=sch[TRUTH_SOURCE],
    )
    return tables, truth, int(due["fraud"].sum())


def generate_fraud_data(
    cfg: FraudDataConfig,
    landing: Landing,
    truth_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> FraudDataSummary:
    """Land `cfg.days` daily partitions of the four fraud sources into `landing`, one day at a time.

    `truth_dir` (a local folder, never the landing zone): also write the ground truth there, one file per day
    `fraud_truth/dt=D/part-0.parquet` listing every fraudulent transaction with its pattern, episode, ring and
    the time of its chargeback (null: never charged back; it may fall after the last day generated). Read it back
    with `read_truth`. Skips the work when the same config was already landed (marker file; and truth written,
    if asked for), unless `force`.
    """
    started = time.perf_counter()
    summary = FraudDataSummary(landing.url, cfg.start, cfg.end, truth_dir=str(truth_dir) if truth_dir else None)
    config = json.loads(cfg.to_json())
    marker = _read_marker(landing)
    truth_ok = truth_dir is None or _truth_marker(Path(truth_dir)) == config
    if not force and marker is not None and marker.get("config") == config and truth_ok:
        for key, value in marker["summary"].items():
            setattr(summary, key, value)
        summary.skipped = True
        log.info("fraud data already landed in %s with this config: reused", landing.url)
        return summary
    for source in SOURCES:
        stale = [day for day in landing.landed_days(source) if not cfg.start <= day <= cfg.end]
        if stale:
            log.warning("%s/%s holds %d partitions outside %s..%s from an earlier run; they are left in place",
                        landing.url, source, len(stale), cfg.start, cfg.end)

    world = _World(cfg)
    pending = _Pending()
    rows = dict.fromkeys(SOURCES, 0)
    truth_sink = Landing(str(truth_dir)) if truth_dir else None
    for d in range(cfg.days):
        day = cfg.start + dt.timedelta(days=d)
        rng = np.random.default_rng([cfg.seed, 1, d])
        pools = _pools(world, d)
        expected = cfg.transactions_per_day * _WEEKDAY[day.weekday()]
        legit = _legit(world, d, rng, pools, expected * (1 - cfg.fraud_rate))
        frauds = _fraud(world, d, rng, pools, expected * cfg.fraud_rate)
        ev = _Events.concat([legit, frauds])
        del legit, frauds
        ev = ev.take(np.argsort(ev.time, kind="stable"))
        tables, truth, fraud_cbs = _tables(world, d, ev, rng, pending)
        for source in SOURCES:
            landing.write_partition_file(source, day, "part-0.parquet", tables[source])
            rows[source] += tables[source].num_rows
            summary.files += 1
        if truth_sink is not None:
            truth_sink.write_partition_file(TRUTH_SOURCE, day, "part-0.parquet", truth)
        summary.fraud_transactions += truth.num_rows
        summary.fraud_chargebacks += fraud_cbs
        del ev, tables, truth
        if progress and ((d + 1) % 10 == 0 or d == cfg.days - 1):
            progress(f"day {d + 1}/{cfg.days} ({day}): {rows['card_transactions']:,} transactions so far")
        log.debug("fraud data: %s landed", day)
    summary.rows = rows
    summary.chargebacks = rows["chargebacks"]
    summary.fraud_rate = summary.fraud_transactions / max(1, rows["card_transactions"])
    summary.seconds = time.perf_counter() - started
    body = {k: v for k, v in asdict(summary).items() if k in ("rows", "fraud_transactions", "fraud_rate",
                                                               "chargebacks", "fraud_chargebacks", "files")}
    if truth_dir:
        (Path(truth_dir) / _MARKER).write_text(json.dumps({"config": config}, indent=2))
    _write_marker(landing, {"config": config, "summary": body})
    log.info("fraud data: %d days, %s rows, %d frauds (%.3f%%), %d chargebacks in %.1f s", cfg.days, rows,
             summary.fraud_transactions, 100 * summary.fraud_rate, summary.chargebacks, summary.seconds)
    return summary


def read_truth(truth_dir: str | Path):
    """The ground truth written by `generate_fraud_data(..., truth_dir=...)` as one pandas DataFrame."""
    import pyarrow.dataset as ds

    return ds.dataset(Path(truth_dir) / TRUTH_SOURCE, format="parquet", partitioning="hive").to_table().drop(
        ["dt"]).to_pandas()


def _truth_marker(truth_dir: Path) -> dict | None:
    path = truth_dir / _MARKER
    return json.loads(path.read_text()).get("config") if path.exists() else None


def _read_marker(landing: Landing) -> dict | None:
    return landing.read_marker(_MARKER)


def _write_marker(landing: Landing, content: dict) -> None:
    landing.write_marker(_MARKER, content)


def main(argv: list[str] | None = None) -> FraudDataSummary:
    """`python -m batchml.fraud_data OUT [--days N ...]`: generate at scale and log seconds per day and peak RSS."""
    import argparse
    import resource

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out")
    parser.add_argument("--truth")
    parser.add_argument("--small", action="store_true", help="start from DEFAULT_CONFIG instead of the full scale")
    for name, value in asdict(FraudDataConfig()).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value))
    parser.add_argument("--start", type=dt.date.fromisoformat)
    parser.add_argument("--drift-start", type=dt.date.fromisoformat)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    base = DEFAULT_CONFIG if args.small else FraudDataConfig()
    changes = {k: v for k, v in vars(args).items() if k in asdict(base) and v is not None}
    import dataclasses

    cfg = dataclasses.replace(base, **changes)
    summary = generate_fraud_data(cfg, Landing(args.out), truth_dir=args.truth, force=args.force,
                                  progress=log.info)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log.info("%.2f s per day of %s transactions (%d days, %.1f s), peak RSS %.0f MB", summary.seconds / cfg.days,
             f"{cfg.transactions_per_day:,}", cfg.days, summary.seconds, peak_mb)
    return summary


if __name__ == "__main__":
    main()
