"""Spark settings every batchml job shares (the population feature job in `features`, the event feature job in
`event_features`): session confs, Parquet read options, the Spark type of each logical column type. Plain data, no
Spark import, so that both jobs and the modules planning their reads can use them without importing each other.
"""

from __future__ import annotations

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
# Options of every Parquet read. The time-window filters are pushed down to Parquet; with dictionary filtering on,
# parquet-mr expands the dictionary of the timestamp column of every file (tens of thousands of values, boxed) to
# test a range it could already test with the min/max statistics, which doubled the scan's CPU time.
PARQUET_READ_OPTIONS = {"parquet.filter.dictionary.enabled": "false"}
