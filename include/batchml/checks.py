"""What `batchml check` verifies beyond valid settings and specs: that this environment can run them.

Each check says what it looked at and, when it fails, what to do. Nothing is written except folders a default
setting needs (the data root, a SQLite file's folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from batchml.errors import ConfigurationError
from batchml.settings import Settings
from batchml.specs import UseCaseSpec


@dataclass
class Check:
    what: str
    ok: bool
    detail: str


def _writable_dir(path: Path, what: str) -> Check:
    if path.exists() and not path.is_dir():
        return Check(what, False, f"{path} is a file, not a folder: point the setting at a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".batchml-check-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(what, False, f"{path} is not a writable folder ({exc.strerror}): fix its permissions or the "
                                  "setting")
    return Check(what, True, str(path))


def data_root(settings: Settings) -> Check:
    return _writable_dir(settings.data_root, "data root (BATCHML_DATA_ROOT)")


def landing(settings: Settings) -> Check:
    what = "landing zone (BATCHML_LANDING_URL)"
    if settings.landing_is_s3:
        from batchml.storage import s3_client, split_s3_url

        bucket, _ = split_s3_url(settings.landing_url)
        try:
            s3_client().head_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001 - every failure here means "cannot use this bucket"
            return Check(what, False, f"cannot reach bucket {bucket!r} ({type(exc).__name__}: {exc}); check the "
                                      "URL, AWS credentials and AWS_ENDPOINT_URL")
        return Check(what, True, settings.landing_url)
    path = Path(settings.landing_url)
    if path.exists() and not path.is_dir():
        return Check(what, False, f"{path} is a file, not a folder")
    return Check(what, True, f"{path}{'' if path.exists() else ' (not created yet: nothing landed)'}")


def warehouse(settings: Settings) -> Check:
    from batchml import warehouse as wh

    what = "warehouse (BATCHML_WAREHOUSE_URL)"
    try:
        eng = wh.create_engine(settings.warehouse_url)
    except wh.WarehouseError as exc:
        return Check(what, False, str(exc))
    try:
        if eng.dialect.name == "sqlite" and eng.url.database:
            Path(eng.url.database).parent.mkdir(parents=True, exist_ok=True)
        wh.ping(eng)
    except (wh.WarehouseError, OSError) as exc:
        return Check(what, False, str(exc))
    finally:
        eng.dispose()
    return Check(what, True, wh.describe(eng))


def tracking(settings: Settings) -> Check:
    """The MLflow tracking store answers (a server) or can be created (a SQLite file)."""
    what = "MLflow tracking (BATCHML_MLFLOW_TRACKING_URI)"
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        return _writable_dir(Path(uri.removeprefix("sqlite:///")).parent, what)
    if settings.mlflow_is_server:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(uri.rstrip("/") + "/health")
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403):  # it answers; credentials are MLflow's own business
                return Check(what, False, f"{uri} answered HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            return Check(what, False, f"cannot reach {uri} ({exc}); is the tracking server up?")
        return Check(what, True, uri)
    return Check(what, True, f"{uri} (not checked)")


def spark_connection(settings: Settings) -> Check:
    what = f"Spark connection (BATCHML_SPARK_CONN_ID={settings.spark_conn_id})"
    try:
        from batchml.pipelines.common import spark_connection as lookup

        master, conf = lookup(settings.spark_conn_id)
    except Exception as exc:  # noqa: BLE001 - a missing connection, or an Airflow that cannot look it up
        return Check(what, False, " ".join(str(exc).split())[:400])
    confs = f", {len(conf)} conf(s)" if conf else ""
    from batchml.spark import is_connect_url, reach_connect_server

    if is_connect_url(master):
        try:
            server = reach_connect_server(master, timeout=3)
        except ConfigurationError as exc:
            return Check(what, False, str(exc))
        return Check(what, True, f"Spark Connect server {server} (reachable){confs}")
    return Check(what, True, f"master {master}{confs}")


def environment(settings: Settings) -> list[Check]:
    return [data_root(settings), landing(settings), warehouse(settings), tracking(settings),
            spark_connection(settings)]


def custom_features(spec: UseCaseSpec) -> Check | None:
    """The spec's custom feature function imports where the tasks run."""
    if not spec.features.custom:
        return None
    from batchml.errors import SpecError
    from batchml.features import load_custom

    what = f"{spec.name}: features.custom.function"
    try:
        load_custom(spec)
    except SpecError as exc:
        return Check(what, False, str(exc))
    return Check(what, True, spec.features.custom.function)
