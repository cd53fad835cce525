"""What validating every raw partition a run reads costs: a feature date's first run (cold cache), the same date
again (every partition cached), the next day (one new partition per source) and a training date of twelve weekly
snapshots (their union, each distinct partition once). Demo-sized churn data (10k customers).

    .venv/bin/python benchmarks/validation_cost.py
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from batchml.demo import DEMO_DATA
from batchml.generate import generate
from batchml.partitions import partitions_read, snapshot_plan
from batchml.settings import get_settings
from batchml.specs import get_spec
from batchml.storage import Landing
from batchml.validation import validate_raw

FEATURE_DATE = dt.date(2026, 7, 1)
TRAINING_DATE = dt.date(2026, 7, 8)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="batchml-validation-cost-"))
    landing = Landing(str(root / "landing"))
    generate(DEMO_DATA, landing)
    spec = get_spec(get_settings().specs_dir, "churn")

    def validate(days: list[dt.date], label: str) -> float:
        started = time.perf_counter()
        for day in days:
            validate_raw(spec, root / "landing", day, root / "gx", label, partitions=partitions_read(spec, landing, day),
                         cache_root=root / "cache")
        return time.perf_counter() - started

    read = partitions_read(spec, landing, FEATURE_DATE)
    rows = [
        (f"features {FEATURE_DATE}, first run (cold cache)", validate([FEATURE_DATE], "first")),
        (f"features {FEATURE_DATE} again (every partition cached)", validate([FEATURE_DATE], "again")),
        (f"features {FEATURE_DATE + dt.timedelta(days=1)} (one new partition per source)",
         validate([FEATURE_DATE + dt.timedelta(days=1)], "next")),
    ]
    plan = snapshot_plan(spec, TRAINING_DATE).all
    rows.append((f"training {TRAINING_DATE}: {len(plan)} snapshots, each distinct partition once",
                 validate(plan, "training")))
    print(f"partitions a feature run reads: {', '.join(f'{s} {len(d)}' for s, d in read.items())}")
    for what, seconds in rows:
        print(f"  {what:70s} {seconds:6.1f} s")
    print("reproduce: .venv/bin/python benchmarks/validation_cost.py")


if __name__ == "__main__":
    main()
