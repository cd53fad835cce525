"""Environment variables -> typed, validated settings (the one configuration surface besides Airflow connections).

Every variable is documented in `.env.example`. Defaults keep all local state under `<repo>/.local/`, so the
demo runs with no server. Relative paths are resolved against the repository root, not the working directory,
so the scheduler, the workers and the CLI agree on where things are.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from batchml.errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]
_ENV_PREFIX = "BATCHML_"


def _resolve(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


class Settings(BaseSettings):
    """Runtime settings. Field names map to `BATCHML_<NAME>` environment variables."""

    model_config = SettingsConfigDict(env_prefix=_ENV_PREFIX, extra="ignore", frozen=True)

    home: Path = Field(default=Path(".local"), description="Root of all embedded local state.")
    data_root: Path | None = Field(
        default=None, description="Data lake: feature partitions, staging, GX Data Docs, reports. Default <home>/data."
    )
    landing_url: str | None = Field(
        default=None,
        description="Where raw files land: a local directory or s3://bucket/prefix. Default <data_root>/landing.",
    )
    specs_dir: Path = Field(default=Path("specs"), description="Folder of use-case specs (*.yaml).")
    warehouse_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the score warehouse. Default sqlite:///<home>/warehouse.db."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI. Default sqlite:///<home>/mlflow.db."
    )
    mlflow_artifact_root: str | None = Field(
        default=None, description="Artifact location for new MLflow experiments. Default <home>/mlartifacts."
    )
    warehouse_reader_role: str | None = Field(
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL role granted SELECT on the score views (analysts' read-only role). Unset: no grant.",
    )
    spark_conn_id: str = Field(
        default="batchml_spark",
        description="Airflow connection whose host is the Spark master and whose extras are Spark confs.",
        pattern=r"^[A-Za-z0-9_.\-]+$",
    )
    spark_class_archive: bool = Field(
        default=True,
        description="Start the Spark driver JVM from a class-data-sharing archive of the classes it loaded before "
                    "(<home>/cache/spark-cds-*.jsa, written by the first run): a third less JVM start-up per task.",
    )
    alert_conn_id: str | None = Field(
        default=None, description="Airflow HTTP connection alerts are POSTed to (e.g. a Slack webhook). Unset: logs only."
    )

    @field_validator("home", "specs_dir", mode="after")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return _resolve(v)

    @field_validator("data_root", mode="after")
    @classmethod
    def _absolute_optional(cls, v: Path | None) -> Path | None:
        return None if v is None else _resolve(v)

    @field_validator("landing_url", mode="after")
    @classmethod
    def _landing(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        parsed = urlparse(v)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError("an s3:// URL needs a bucket, e.g. s3://my-bucket/landing")
            return v.rstrip("/")
        if parsed.scheme in ("", "file"):
            return str(_resolve(parsed.path if parsed.scheme == "file" else v))
        raise ValueError(f"scheme {parsed.scheme!r} is not supported; use a local path or s3://bucket/prefix")

    @field_validator("warehouse_url", mode="after")
    @classmethod
    def _warehouse(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if not scheme or scheme.startswith(("http", "file", "s3")):
            raise ValueError(
                "expected a SQLAlchemy URL such as sqlite:////abs/path.db or postgresql+psycopg://user@host:5432/db"
            )
        return v

    @field_validator("mlflow_tracking_uri", mode="after")
    @classmethod
    def _tracking(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if "://" not in v and v != "databricks":
            raise ValueError("expected sqlite:////abs/mlflow.db, postgresql://..., or http(s)://tracking-server:5000")
        return v

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        # frozen model: defaults that depend on other fields are filled through object.__setattr__
        home = self.home
        if self.data_root is None:
            object.__setattr__(self, "data_root", home / "data")
        if self.landing_url is None:
            object.__setattr__(self, "landing_url", str(self.data_root / "landing"))
        if self.warehouse_url is None:
            object.__setattr__(self, "warehouse_url", f"sqlite:///{home / 'warehouse.db'}")
        if self.mlflow_tracking_uri is None:
            object.__setattr__(self, "mlflow_tracking_uri", f"sqlite:///{home / 'mlflow.db'}")
        if self.mlflow_artifact_root is None and not self.mlflow_is_server:
            # a tracking server decides where artifacts go (e.g. proxied to S3); a local store keeps them here
            object.__setattr__(self, "mlflow_artifact_root", str(home / "mlartifacts"))
        return self

    @property
    def mlflow_is_server(self) -> bool:
        return str(self.mlflow_tracking_uri).startswith(("http://", "https://", "databricks"))

    # Derived locations inside the data lake ------------------------------------------------------------------
    @property
    def landing_is_s3(self) -> bool:
        return str(self.landing_url).startswith("s3://")

    @property
    def features_root(self) -> Path:
        return self.data_root / "features"

    @property
    def staging_root(self) -> Path:
        return self.data_root / "_staging"

    @property
    def gx_root(self) -> Path:
        """The Great Expectations project folder (suites, results, Data Docs)."""
        return self.data_root / "gx"

    @property
    def data_docs_index(self) -> Path:
        return self.gx_root / "uncommitted" / "data_docs" / "local_site" / "index.html"

    @property
    def reports_root(self) -> Path:
        return self.data_root / "reports"


# BATCHML_* variables that are not settings: set by bin/env.sh, by the GX runner for itself, by bin/stack
NOT_SETTINGS = ("BATCHML_REPO", "BATCHML_GX_WAREHOUSE_URL")
NOT_SETTINGS_PREFIXES = ("BATCHML_STACK_",)


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """BATCHML_* variables that no setting reads, each with the closest known name (a typo would otherwise be
    ignored silently and the default used)."""
    import difflib
    import os

    environ = os.environ if environ is None else environ
    known = [f"{_ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    out = []
    for var in sorted(environ):
        if (not var.startswith(_ENV_PREFIX) or var in known or var in NOT_SETTINGS
                or var.startswith(NOT_SETTINGS_PREFIXES)):
            continue
        close = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
        out.append(f"{var}: not a batchml setting" + (f"; did you mean {close[0]}?" if close else
                                                       f"; known settings: {', '.join(known)}"))
    return out


def get_settings() -> Settings:
    """Read and validate settings from the environment; raise SettingsError naming the variable at fault (a bad
    value, or a BATCHML_* variable no setting reads)."""
    unknown = unknown_variables()
    if unknown:
        raise SettingsError("Unknown environment settings:\n  " + "\n  ".join(unknown)
                            + "\nRename or remove the variable (see .env.example) and retry.")
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            var = f"{_ENV_PREFIX}{field.upper()}" if err["loc"] else "BATCHML_* settings"
            value = err.get("input")
            shown = f"={value!r}" if isinstance(value, str | int | float) else ""
            reason = err["msg"].removeprefix("Value error, ")
            lines.append(f"{var}{shown}: {reason}")
        raise SettingsError(
            "Invalid environment settings:\n  " + "\n  ".join(lines) + "\nFix the variable (see .env.example) and retry."
        ) from None
