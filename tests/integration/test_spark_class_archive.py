"""The Spark driver's class-data-sharing archive (batchml.sparkconf.class_archive_options): the first driver JVM
writes one as it exits, a later start adopts it and loads Spark's classes from it; writers' files are taken only
once settled, and the setting turns it all off."""

import os
import subprocess
import sys
import time

import pytest

from batchml.sparkconf import class_archive_options


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BATCHML_SPARK_CLASS_ARCHIVE", "true")
    return tmp_path / "home"


def _backdate(path, seconds=600):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_writer_file_is_adopted_only_once_settled_and_extra_ones_are_removed(home, monkeypatch):
    first = class_archive_options()
    assert first.startswith("-XX:ArchiveClassesAtExit=") and f".{os.getpid()}.tmp" in first
    writing = home / "cache" / first.split("=", 1)[1].split()[0].rsplit("/", 1)[1]
    archive = home / "cache" / (writing.name.split(".jsa")[0] + ".jsa")
    # this process's own file is never adopted (its JVM would write it at exit), however old
    writing.write_bytes(b"x" * 10)
    _backdate(writing)
    assert "ArchiveClassesAtExit" in class_archive_options() and not archive.exists()
    # a dead writer's file: adopted once older than the settle time, the largest of several; the others removed
    dead = [archive.with_name(f"{archive.name}.{pid}.tmp") for pid in (2**22 + 1, 2**22 + 2, 2**22 + 3)]
    for size, path in zip((100, 300, 200), dead, strict=True):
        path.write_bytes(b"y" * size)
    assert "ArchiveClassesAtExit" in class_archive_options(), "fresh files are still being written"
    for path in dead:
        _backdate(path)
    options = class_archive_options()
    assert options.startswith(f"-XX:SharedArchiveFile={archive} -Xshare:auto")
    assert archive.read_bytes() == b"y" * 300 and not any(p.exists() for p in dead)
    monkeypatch.setenv("BATCHML_SPARK_CLASS_ARCHIVE", "false")
    assert class_archive_options() == ""


_START = """
import sys
from batchml.spark import start_spark
spark = start_spark("local[1]", {"spark.driver.extraJavaOptions": sys.argv[1]}, "archive-test")
assert spark.range(1000).selectExpr("sum(id)").collect()[0][0] == 499500
"""


@pytest.mark.spark
def test_the_first_driver_writes_the_archive_and_the_next_loads_spark_from_it(home, tmp_path):
    env = {**os.environ, "BATCHML_HOME": str(home), "BATCHML_SPARK_CLASS_ARCHIVE": "true"}
    first = subprocess.run([sys.executable, "-c", _START, "-XX:+UseParallelGC"], env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    # the JVM writes its archive as it exits, just after the Python process: wait for the file to stop growing
    deadline, sizes = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        written = list((home / "cache").glob("spark-cds-*.jsa.*.tmp"))
        sizes.append(sum(p.stat().st_size for p in written))
        if len(sizes) > 3 and sizes[-1] > 10_000_000 and sizes[-1] == sizes[-4]:
            break
        time.sleep(1)
    assert len(written) == 1 and written[0].stat().st_size > 10_000_000, sizes[-5:]
    _backdate(written[0])

    classes = tmp_path / "classes.log"
    second = subprocess.run([sys.executable, "-c", _START, f"-Xlog:class+load=info:file={classes}"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert list((home / "cache").glob("spark-cds-*.jsa")) and not list((home / "cache").glob("*.tmp"))
    log = classes.read_text()
    from_archive = sum("source: shared objects file (top)" in line for line in log.splitlines())
    assert from_archive > 2000, f"{from_archive} classes from the archive:\n{log[-2000:]}"
    assert "org.apache.spark.SparkContext source: shared objects file (top)" in log
