"""docs/add-a-use-case.md, "A table without an id column": the guide's snippet, run as written on exports without an
id, gives every account the same id in every export (another row order, changed values elsewhere), and stops on
rows it cannot tell apart; `batchml ingest` then lands the file."""

import re
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "add-a-use-case.md"


def _snippet(folder: Path) -> Path:
    block = next(b for b in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S) if "hashlib" in b)
    path = folder / "derive_id.py"
    path.write_text(block)
    return path


def _export(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    companies = [f"Company {i}" for i in range(rows)]
    return pd.DataFrame({
        "company": companies, "country": rng.choice(["DE", "FR", "UK", "US"], rows),
        "signup_date": [f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(rows)],
        "plan": rng.choice(["basic", "pro", "team"], rows), "seats": rng.integers(1, 20, rows),
        "monthly_fee": rng.uniform(10, 500, rows).round(2), "tenure_months": rng.integers(0, 60, rows),
        "logins_30d": rng.integers(0, 300, rows), "tickets_90d": rng.integers(0, 5, rows),
        "nps": rng.integers(0, 11, rows).astype(float), "cancelled": rng.choice(["no", "yes"], rows),
    })


def test_the_derived_id_is_stable_across_exports_and_lands(tmp_path, monkeypatch):
    import datetime as dt

    from batchml.ingest import ingest
    from batchml.specs import load_spec

    script = _snippet(tmp_path)
    monkeypatch.chdir(tmp_path)
    first = _export(300, seed=1)
    first.to_csv("accounts.csv", index=False)
    runpy.run_path(str(script))
    ids_first = pd.read_csv("accounts_with_id.csv")
    assert ids_first["Account ID"].is_unique and len(ids_first) == 300
    # the next export: other order, other plans and usage, same identifying columns
    second = _export(300, seed=2).assign(company=first.company, country=first.country,
                                         signup_date=first.signup_date).sample(frac=1, random_state=0)
    second.to_csv("accounts.csv", index=False)
    runpy.run_path(str(script))
    ids_second = pd.read_csv("accounts_with_id.csv")
    merged = ids_first.merge(ids_second, on=["company", "country", "signup_date"], suffixes=("", "_next"))
    assert len(merged) == 300 and (merged["Account ID"] == merged["Account ID_next"]).all()
    spec = load_spec(REPO / "docs" / "examples" / "subscriptions.yaml")
    landed = ingest(spec, "accounts", str(tmp_path / "accounts_with_id.csv"), dt.date(2026, 11, 1),
                    str(tmp_path / "landing"))
    assert landed.rows == 300
    # two rows the identifying columns cannot tell apart stop the script, before anything is landed
    pd.concat([first, first.head(2)]).to_csv("accounts.csv", index=False)
    with pytest.raises(SystemExit, match="4 rows share"):
        runpy.run_path(str(script))
