"""Where data lives: the landing zone (local folder or S3) and the data lake, with atomic publishing.

Layout, for source `s`, use case `u` and day `D` (ISO date):
  landing:  <landing_url>/<s>/dt=D/*.parquet                 raw files, one partition per day
  lake:     <data_root>/features/<u>/dt=D/part-0.parquet      the published feature partition (one file)
            <data_root>/features/<u>/dt=D/_manifest.json      what was published, by which run
Spark reads local paths only here (no hadoop-aws jars), so an S3 landing zone is mirrored to a local folder
with boto3 before Spark or Great Expectations read it; a cluster image with hadoop-aws could read s3a:// directly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from batchml.errors import LandingError, PublishError

log = logging.getLogger(__name__)

PARTITION_FORMAT = "dt={day}"
DATA_FILE = "part-0.parquet"
MIRROR_THREADS = 16  # concurrent downloads when mirroring an S3 landing zone
MANIFEST_FILE = "_manifest.json"


def day_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day from `first` to `last`, both included."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def partition_name(day: dt.date) -> str:
    return PARTITION_FORMAT.format(day=day.isoformat())


def s3_client():
    import boto3  # boto3 honours AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE, ... from the environment

    # a new session each time: boto3's default session keeps the first credentials it resolved for the life of the
    # process, so rotated keys (or another endpoint's) in the environment would be ignored
    return boto3.session.Session().client("s3")


def split_s3_url(url: str) -> tuple[str, str]:
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class Landing:
    """The landing zone of raw files: a local folder or an `s3://bucket/prefix` URL."""

    url: str

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    def partition_url(self, source: str, day: dt.date) -> str:
        return f"{self.url.rstrip('/')}/{source}/{partition_name(day)}"

    # Listing -----------------------------------------------------------------------------------------------------
    def list_source(self, source: str) -> dict[dt.date, dict[str, str]]:
        """Every landed partition of a source as {day: {file name: version tag}}, in one listing.

        The version tag is the S3 ETag, or size+mtime locally; it lets the local mirror skip unchanged files.
        """
        out: dict[dt.date, dict[str, str]] = {}
        if self.is_s3:
            bucket, prefix = split_s3_url(f"{self.url}/{source}")
            paginator = s3_client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix + "/"):
                for obj in page.get("Contents", []):
                    part, _, name = obj["Key"][len(prefix) + 1 :].partition("/")
                    day = _partition_day(part)
                    if day is not None and name.endswith(".parquet") and "/" not in name:
                        out.setdefault(day, {})[name] = obj["ETag"].strip('"')
            return out
        folder = Path(self.url) / source
        if folder.is_dir():
            for part in folder.iterdir():
                day = _partition_day(part.name)
                if day is None:
                    continue
                files = {
                    p.name: f"{p.stat().st_size}-{p.stat().st_mtime_ns}"
                    for p in part.glob("*.parquet")
                    if not p.name.startswith((".", "_"))
                }
                if files:
                    out[day] = files
        return out

    def landed_days(self, source: str, before: dt.date | None = None) -> list[dt.date]:
        """Days with a landed partition of `source` (strictly before `before`, if given)."""
        return sorted(d for d in self.list_source(source) if before is None or d < before)

    def missing_partitions(self, source: str, days: Iterable[dt.date]) -> list[dt.date]:
        landed = self.list_source(source)
        return [d for d in days if d not in landed]

    # Markers: a small JSON object at the top of the landing zone (what a generator landed there) ----------------
    def read_marker(self, name: str) -> dict | None:
        """The JSON object `name` at the top of the landing zone, or None when there is none."""
        if self.is_s3:
            bucket, prefix = split_s3_url(self.url)
            try:
                body = s3_client().get_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"))["Body"].read()
            except Exception:  # noqa: BLE001 - any miss means "no marker"
                return None
            return json.loads(body)
        path = Path(self.url) / name
        return json.loads(path.read_text()) if path.exists() else None

    def write_marker(self, name: str, content: dict) -> None:
        body = json.dumps(content, indent=2, default=str)
        if self.is_s3:
            bucket, prefix = split_s3_url(self.url)
            s3_client().put_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"), Body=body.encode())
            return
        Path(self.url).mkdir(parents=True, exist_ok=True)
        (Path(self.url) / name).write_text(body)

    # Writing (used by the demo generator and ingestion) ----------------------------------------------------------
    def write_partition_file(self, source: str, day: dt.date, name: str, table) -> str:
        """Write one Parquet file into a partition; atomic per file (temp + rename locally, one PUT on S3)."""
        import pyarrow.parquet as pq

        if self.is_s3:
            import pyarrow as pa

            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="zstd")
            bucket, prefix = split_s3_url(self.partition_url(source, day))
            key = f"{prefix}/{name}"
            s3_client().put_object(Bucket=bucket, Key=key, Body=sink.getvalue().to_pybytes())
            return f"s3://{bucket}/{key}"
        folder = Path(self.partition_url(source, day))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, folder / name)
        return str(folder / name)

    def replace_partition(self, source: str, day: dt.date, table, name: str = "part-0.parquet") -> tuple[str, int]:
        """Land `table` as the whole partition of `day`, replacing every file it held whatever their names, in one
        step; returns (where it landed, rows the replaced files held). Locally: a new folder swapped in atomically.
        S3 has no multi-object transaction: the new object is written, then the other objects are deleted."""
        import pyarrow.parquet as pq

        if self.is_s3:
            bucket, prefix = split_s3_url(self.partition_url(source, day))
            client = s3_client()
            old = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                                          Prefix=prefix + "/")
                   for o in page.get("Contents", [])]
            replaced = sum(_s3_parquet_rows(client, bucket, k) for k in old if k.endswith(".parquet"))
            location = self.write_partition_file(source, day, name, table)
            stale = [k for k in old if k != f"{prefix}/{name}"]
            for i in range(0, len(stale), 1000):
                client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[i:i + 1000]]})
            return location, replaced
        target = Path(self.partition_url(source, day))
        replaced = sum(pq.read_metadata(p).num_rows for p in target.glob("*.parquet")
                       if not p.name.startswith((".", "_"))) if target.is_dir() else 0
        tmp = sibling_temp_dir(target)
        try:
            pq.write_table(table, tmp / name, compression="zstd")
            swap_in_folder(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(target / name), replaced

    # Reading -----------------------------------------------------------------------------------------------------
    def local_view(self, sources_days: dict[str, list[dt.date]], mirror_root: Path) -> Path:
        """A local folder with the same layout holding at least the requested partitions.

        Local landing: the landing folder itself. S3: a mirror under `mirror_root`, synced per partition by
        ETag (unchanged files are not downloaded again; files deleted upstream are deleted locally).
        """
        if not self.is_s3:
            return Path(self.url)
        bucket, prefix = split_s3_url(self.url)
        root = mirror_root / bucket / prefix
        client = s3_client()
        wanted: list[tuple[str, Path, str]] = []  # (key, local file, etag)
        for source, days in sources_days.items():
            remote_source = self.list_source(source)
            for day in days:
                remote = remote_source.get(day)
                local_dir = root / source / partition_name(day)
                if remote is None:  # gone upstream: so is the mirror, so readers see it as missing
                    shutil.rmtree(local_dir, ignore_errors=True)
                    continue
                local_dir.mkdir(parents=True, exist_ok=True)
                for stale in local_dir.glob("*.parquet"):
                    if stale.name not in remote:
                        stale.unlink()
                        (local_dir / f".{stale.name}.etag").unlink(missing_ok=True)
                for name, etag in remote.items():
                    tag_file = local_dir / f".{name}.etag"
                    if (local_dir / name).exists() and tag_file.exists() and tag_file.read_text() == etag:
                        continue
                    key = "/".join(p for p in (prefix, source, partition_name(day), name) if p)
                    wanted.append((key, local_dir / name, etag))

        def download(key: str, target: Path, etag: str) -> None:
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            try:
                client.download_file(bucket, key, str(tmp))
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            target.with_name(f".{target.name}.etag").write_text(etag)

        # many small partition files: one request each, so latency, not bandwidth, sets the pace (boto3 clients are
        # thread-safe); the first failure is raised once the others have stopped
        with ThreadPoolExecutor(max_workers=MIRROR_THREADS) as pool:
            for done in [pool.submit(download, *w) for w in wanted]:
                done.result()
        downloaded = len(wanted)
        log.info("Mirrored %s to %s (%d files downloaded)", self.url, root, downloaded)
        return root


def _s3_parquet_rows(client, bucket: str, key: str) -> int:
    """Rows of a Parquet object on S3, from its footer (two ranged reads, not the whole object)."""
    import struct

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        tail = client.get_object(Bucket=bucket, Key=key, Range="bytes=-8")["Body"].read()
        length = struct.unpack("<I", tail[:4])[0]
        footer = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{length + 8}")["Body"].read()
        return pq.read_metadata(pa.BufferReader(b"PAR1" + footer)).num_rows  # header magic, then the footer
    except Exception:  # noqa: BLE001 - an unreadable old object still gets replaced; its rows are unknown
        return 0


def _partition_day(name: str) -> dt.date | None:
    if not name.startswith("dt="):
        return None
    try:
        return dt.date.fromisoformat(name[3:])
    except ValueError:
        return None


def read_partition(root: Path, source: str, day: dt.date, columns: list[str] | None = None):
    """Read one local landing partition into an Arrow table, with a clear error for missing or corrupt files."""
    folder = root / source / partition_name(day)
    if not folder.is_dir():
        raise LandingError(
            f"{folder}: partition {source}/{partition_name(day)} has not landed. "
            "Land it (or re-run the upstream ingestion), then clear this task."
        )
    names = sorted(p.name for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))
    return read_parquet_files(folder, names, columns)


def read_parquet_files(folder: Path, names: list[str], columns: list[str] | None = None, where: str = ""):
    """The data files `names` of one partition folder as one Arrow table (None when there are none); a LandingError
    names a corrupt file or files whose schemas differ, after `where` (e.g. "Source 'x', partition dt=D: ")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for name in names:
        try:
            tables.append(pq.read_table(folder / name, columns=columns))
        except (pa.ArrowInvalid, OSError) as exc:
            raise LandingError(f"{folder / name}: not a readable Parquet file ({exc}). {where}Re-land this file, "
                               "then clear this task.") from None
    if not tables:
        return None
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise LandingError(f"{folder}: files of one partition have different schemas ({exc}). Re-land the "
                           "partition as one delivery (batchml ingest replaces a day whole), then clear this task."
                           ) from None


# Data lake: atomic publishing ------------------------------------------------------------------------------------


def feature_partition_dir(features_root: Path, use_case: str, day: dt.date) -> Path:
    return features_root / use_case / partition_name(day)


def feature_partition_file(features_root: Path, use_case: str, day: dt.date) -> Path:
    return feature_partition_dir(features_root, use_case, day) / DATA_FILE


def string_values(folders: list[str], column: str, limit: int) -> list[str] | None:
    """The string values of `column` in the Parquet files of `folders` (landed partitions), read from their
    dictionaries with pyarrow: sorted, nulls left out; more than `limit` of them once that many are found (reading
    stops there); None when the files cannot be read so (not strings, no such column, unreadable).

    The feature job's distinct-count masks need the values of a window's events (batchml.features._value_bits): about
    0.5 s for the 1,800 files of a 90-day window at 1M customers, against 3-6 s for a Spark job (docs/benchmarks.md).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    files = sorted(str(f) for p in folders for f in Path(p).glob("*.parquet") if not f.name.startswith((".", "_")))
    if not files:
        return []
    values: set[str] = set()
    try:
        fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=[column]))
        for batch in ds.dataset(files, format=fmt).to_batches(columns=[column]):
            col = batch.column(0)
            found = col.dictionary if pa.types.is_dictionary(col.type) else pc.unique(col)
            if not (pa.types.is_string(found.type) or pa.types.is_large_string(found.type)):
                return None
            values.update(v for v in found.to_pylist() if v is not None)
            if len(values) > limit:
                break
    except (pa.ArrowException, OSError) as exc:
        log.debug("values of %s not read from the Parquet dictionaries of %s...: %s", column, files[0], exc)
        return None
    return sorted(values)


def single_parquet_file(folder: Path) -> Path:
    """The one data file Spark wrote into `folder` (the job writes a single partition)."""
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))
    if len(files) != 1:
        raise PublishError(f"{folder}: expected exactly one staged Parquet file, found {len(files)}")
    return files[0]


def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the filesystem or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in_folder(new_dir: Path, target_dir: Path) -> None:
    """Make `new_dir` the content of `target_dir` in one step: readers see the old folder or the new one, whole,
    never a mix. The old content is deleted afterwards; `new_dir` must be a sibling (same filesystem)."""
    if not target_dir.exists():
        os.rename(new_dir, target_dir)
        return
    if _rename_exchange(new_dir, target_dir):
        shutil.rmtree(new_dir, ignore_errors=True)  # now holds the old content
        return
    # no atomic exchange here: two renames, the target missing between them for an instant
    old = target_dir.with_name(f".{target_dir.name}.old.{uuid.uuid4().hex}")
    os.rename(target_dir, old)
    os.rename(new_dir, target_dir)
    shutil.rmtree(old, ignore_errors=True)


def sibling_temp_dir(target_dir: Path) -> Path:
    """A fresh hidden folder next to `target_dir` (readers skip names starting with a dot)."""
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = target_dir.with_name(f".{target_dir.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    return tmp


def remove_stale_temp_dirs(parent: Path) -> list[Path]:
    """Delete `.<name>.<id>.tmp` and `.<name>.old.<id>` folders a killed publish left next to the partitions."""
    stale = [p for p in parent.glob(".dt=*") if p.is_dir() and (p.name.endswith(".tmp") or ".old." in p.name)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def publish_file(staged_file: Path, target_dir: Path, manifest: dict) -> Path:
    """Publish a staged data file and its manifest as one partition folder, in one step.

    Both are written into a hidden sibling folder, which then replaces `target_dir` by an atomic exchange: readers
    see the previous data with its manifest or the new data with its manifest, never one without the other, and no
    temporary file is ever inside a published folder. If anything fails before the exchange, the previous
    partition is untouched. Re-publishing the same day replaces it (idempotent).
    """
    remove_stale_temp_dirs(target_dir.parent)
    tmp = sibling_temp_dir(target_dir)
    try:
        try:  # a hard link, so that the staged file survives a failed publish (a retry publishes it again)
            os.link(staged_file, tmp / DATA_FILE)
        except OSError:
            shutil.copyfile(staged_file, tmp / DATA_FILE)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
        swap_in_folder(tmp, target_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PublishError(f"could not publish {staged_file} as {target_dir}: {exc}; the previous partition is "
                           "intact") from exc
    return target_dir / DATA_FILE


def read_manifest(partition_dir: Path) -> dict | None:
    path = partition_dir / MANIFEST_FILE
    return json.loads(path.read_text()) if path.exists() else None


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
