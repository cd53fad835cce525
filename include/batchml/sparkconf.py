"""Spark settings every batchml job shares (the population feature job in `features`, the event feature job in
`event_features`): session confs, Parquet read options, the Spark type of each logical column type, and the driver
JVM's class-data-sharing archive. No Spark session import, so that both jobs and the modules planning their reads
can use them without importing each other.
"""

from __future__ import annotations

from pathlib import Path

SPARK_TYPES = {
    "string": "string",
    "int": "bigint",
    "double": "double",
    "timestamp": "timestamp",
    "date": "date",
    "bool": "boolean",
}
# Confs applied to every session this package creates or receives (runtime-settable SQL confs only).
RUNTIME_CONFS = {
    "spark.sql.session.timeZone": "UTC",
    # The job reads one folder per day (90 for a 90-day window, every landed day for the population). Above this
    # many paths Spark lists them with a distributed job of one task per folder: 4 such jobs per run cost seconds
    # on a small cluster, while the driver lists a few hundred local folders in milliseconds.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1024",
}
# Options of every Parquet read. Where filters are pushed down to Parquet (off in batchml.spark.DEFAULT_CONFS; a
# connection may turn it on), dictionary filtering made parquet-mr expand the dictionary of the timestamp column of
# every file (tens of thousands of values, boxed) to test a range the min/max statistics already answer: it doubled
# the scan's CPU time.
PARQUET_READ_OPTIONS = {"parquet.filter.dictionary.enabled": "false"}


JAVA_OPTIONS = "spark.driver.extraJavaOptions"
ARCHIVE_SETTLE_SECONDS = 60
"""A written archive is taken once its writer's Python process is gone and the file this old: the JVM writes it as
it exits, just after its Python process."""


def _settled(path: Path) -> bool:
    import os
    import time

    try:
        os.kill(int(path.suffixes[-2].lstrip(".")), 0)
        return False  # its writer still runs: the JVM has not even started writing
    except (ProcessLookupError, ValueError, IndexError):
        pass
    except PermissionError:
        return False
    stat = path.stat()
    return stat.st_size > 0 and time.time() - stat.st_mtime > ARCHIVE_SETTLE_SECONDS


def class_archive_options() -> str:
    """JVM options that start the Spark driver from a class-data-sharing (CDS) archive, or write one.

    Every Airflow task starts a new driver JVM, which loads and verifies some 15,000 classes of Spark before its
    first job: about 6 s of both cores. Java 17 can archive the classes a run loaded (`ArchiveClassesAtExit`, written
    when the JVM exits) and map them at the next start (`SharedArchiveFile`), which cut session start plus first job
    by a third here (docs/benchmarks.md). The archive is keyed by the Java and Spark installation; each writer uses a
    file of its own, adopted by a later start once settled. A missing, stale or foreign archive is ignored by the JVM
    (`-Xshare:auto`); its messages are turned off. `BATCHML_SPARK_CLASS_ARCHIVE=false` disables it."""
    import hashlib
    import os
    import shutil

    from batchml.settings import get_settings

    settings = get_settings()
    if not settings.spark_class_archive:
        return ""
    import pyspark

    java = shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get("JAVA_HOME") \
        else shutil.which("java")
    jars = Path(pyspark.__file__).parent / "jars"
    key = hashlib.sha256("|".join([pyspark.__version__, os.path.realpath(java or "java"), str(jars),
                                   str(len(list(jars.glob("*.jar"))))]).encode()).hexdigest()[:12]
    # resolved: the JVM writes the archive as it exits, after the Python process, so a path through a symlink that
    # the process removed on its way out (a benchmark's throwaway home) must not be what it is given
    folder = (settings.home / "cache").resolve()
    archive = folder / f"spark-cds-{key}.jsa"
    quiet = "-Xlog:cds=off -Xlog:cds+dynamic=off"
    settled = [p for p in folder.glob(f"{archive.name}.*.tmp") if _settled(p)]
    if settled and not archive.exists():
        adopted = max(settled, key=lambda p: p.stat().st_size)
        os.replace(adopted, archive)
        settled.remove(adopted)
    if archive.exists():
        for extra in settled:  # other writers' archives of the same classes: not needed any more
            extra.unlink(missing_ok=True)
        return f"-XX:SharedArchiveFile={archive} -Xshare:auto {quiet}"
    folder.mkdir(parents=True, exist_ok=True)
    return f"-XX:ArchiveClassesAtExit={folder / f'{archive.name}.{os.getpid()}.tmp'} {quiet}"
