"""Exceptions raised by batchml, and which failures a retry can fix.

Every message names what is wrong, where, and what to do next. Errors are permanent (bad data, bad configuration,
anything that cannot succeed on a retry: the task fails at once) unless they are transient (network, locks,
timeouts: the task is retried with back-off). `is_permanent` classifies any exception, batchml's own or not.
"""

from __future__ import annotations


class BatchMLError(Exception):
    """Base class of every error this package raises on purpose. Permanent unless `retryable`."""

    retryable = False


class SettingsError(BatchMLError):
    """An environment variable has a value batchml cannot use."""


class ConfigurationError(BatchMLError):
    """A setting, connection or installation cannot work (a driver not installed, a missing Airflow connection, an
    invalid Spark option, a data root that is not a writable folder)."""


class SpecError(BatchMLError):
    """A use-case spec is missing, unreadable or invalid."""


class LandingError(BatchMLError):
    """Landed raw data is missing, unreadable or does not match its declared schema."""


class DataValidationError(BatchMLError):
    """Great Expectations found data that breaks its suite; nothing downstream was published."""

    def __init__(self, message: str, failures: list[dict] | None = None, data_docs: str | None = None):
        super().__init__(message)
        self.failures = failures or []
        self.data_docs = data_docs


class PublishError(BatchMLError):
    """A partition or table could not be published atomically; the previous version is intact."""


class TransientError(BatchMLError):
    """A service that should be there did not answer (a warehouse, a tracking server): a retry may succeed."""

    retryable = True


# Exceptions of other libraries ----------------------------------------------------------------------------------

_PERMANENT_TYPES = ("AirflowNotFoundException", "NoSuchModuleError", "ArgumentError", "AnalysisException",
                    "ParseException", "NotADirectoryError", "IsADirectoryError", "PermissionError")
# messages of failures no retry can fix (Spark and JVM start-up, corrupt or mistyped files, unknown drivers)
_PERMANENT_MESSAGES = (
    "JAVA_GATEWAY_EXITED", "Could not create the Java Virtual Machine", "Invalid maximum heap size",
    "Invalid initial heap size", "is not a Parquet file", "Could not read footer", "Parquet column cannot be converted",
    "Can't load plugin", "No module named", "FAILED_READ_FILE", "UNRESOLVED_COLUMN", "CANNOT_MERGE_SCHEMAS",
)
# messages of failures a retry may fix
_TRANSIENT_MESSAGES = ("database is locked", "Connection refused", "could not connect to server", "timed out",
                       "Timeout", "temporarily unavailable", "Connection reset", "EndpointConnectionError",
                       "ThrottlingException", "SlowDown", "deadlock detected", "server closed the connection")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_permanent(exc: BaseException) -> bool:
    """Whether a retry cannot fix `exc`: batchml's own permanent errors, a missing module or driver, a missing
    Airflow connection, an invalid Spark/JVM setting, a corrupt file. Unknown failures count as transient."""
    for link in _chain(exc):
        if isinstance(link, BatchMLError):
            return not link.retryable
        if isinstance(link, ImportError):
            return True
        text = f"{type(link).__name__}: {link}"
        if any(m in text for m in _TRANSIENT_MESSAGES):
            return False
        if type(link).__name__ in _PERMANENT_TYPES or any(m in text for m in _PERMANENT_MESSAGES):
            return True
    return False


def what_to_do(exc: BaseException) -> str:
    """A short hint for a permanent failure of another library (batchml's own messages carry theirs)."""
    text = " ".join(f"{type(e).__name__}: {e}" for e in _chain(exc))
    if "AirflowNotFoundException" in text:
        return "define the Airflow connection (or fix BATCHML_SPARK_CONN_ID / the connection id), then clear the task"
    if "JAVA_GATEWAY_EXITED" in text or "Java Virtual Machine" in text or "heap size" in text:
        return ("the Spark driver JVM did not start: check the Spark connection's extras (e.g. spark.driver.memory: "
                "2g) and that Java 17 is installed, then clear the task")
    if isinstance(exc, ImportError) or "No module named" in text or "Can't load plugin" in text:
        return "install the missing package (see pyproject.toml's extras), then clear the task"
    if "Parquet" in text or "FAILED_READ_FILE" in text:
        return "re-land the file named above (it is corrupt or of another type), then clear the task"
    return "fix the cause named above, then clear the task"
