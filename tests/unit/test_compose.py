"""The deployment files (docker-compose.yaml, docker/Dockerfile, docker/postgres/init.sql) read and cross-checked.

No Docker engine runs here: these tests parse the files, expand `${VAR:-default}` the way Compose does, and check
the properties a real `docker compose up` depends on: services that exist, databases and roles that match the
connection URLs, buckets that exist for the S3 URLs, versions that match requirements.txt, BATCHML_* variables that
settings.py validates, and a Spark connection Airflow can parse into a master URL.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from batchml.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
INIT_SQL = REPO / "docker" / "postgres" / "init.sql"

# Airflow 3 components and the `airflow` subcommand each one runs
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",  # profile celery
}
ONE_SHOT = {"minio-init", "airflow-init"}
SPARK = {"spark-master", "spark-worker"}
CELERY_PROFILE = {"redis", "airflow-worker"}
EXPECTED_SERVICES = {"postgres", "minio", "mlflow", *ONE_SHOT, *AIRFLOW_COMPONENTS, *SPARK, *CELERY_PROFILE}
EXECUTORS = {"LocalExecutor", "CeleryExecutor", "KubernetesExecutor"}
# Overrides a deployment would set: the same variable must reach both ends (server and client)
CUSTOM_ENV = {
    "POSTGRES_PASSWORD": "pg-custom-1",
    "AIRFLOW_DB_PASSWORD": "af-custom-2",
    "WAREHOUSE_DB_PASSWORD": "wh-custom-3",
    "MLFLOW_DB_PASSWORD": "ml-custom-4",
    "MINIO_ROOT_USER": "custom-user",
    "MINIO_ROOT_PASSWORD": "custom-secret-5",
}


# Compose-style interpolation ---------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _closing_brace(text: str, start: int) -> int:
    depth, i = 0, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def interpolate(text: str, env: Mapping[str, str], refs: list[tuple[str, str]] | None = None) -> str:
    """Expand $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR:+alt} (nested), as Compose does.

    Every variable met is appended to `refs` as (name, operator), operator "" when there is none.
    """
    refs = [] if refs is None else refs
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            body = text[i + 2 : end]
            name = _NAME.match(body)
            if name is None:
                raise ValueError(f"bad variable ${{{body}}} in {text!r}")
            rest = body[name.end() :]
            op = next((o for o in (":-", "-", ":?", "?", ":+", "+") if rest.startswith(o)), "")
            if rest and not op:
                raise ValueError(f"bad variable ${{{body}}} in {text!r}")
            refs.append((name.group(), op))
            arg = rest[len(op) :]
            value, is_set = env.get(name.group()), name.group() in env
            if op in (":-", "-"):
                default = interpolate(arg, env, refs)
                out.append(value if (value if op == ":-" else is_set) else default)
            elif op in (":?", "?"):
                if not (value if op == ":?" else is_set):
                    raise KeyError(f"{name.group()} is required: {arg}")
                out.append(value)
            elif op in (":+", "+"):
                alt = interpolate(arg, env, refs)
                out.append(alt if (value if op == ":+" else is_set) else "")
            else:
                out.append(value or "")
            i = end + 1
        else:
            name = _NAME.match(text, i + 1)
            if name is None:
                raise ValueError(f"a lone $ in {text!r} (write $$ for a literal dollar)")
            refs.append((name.group(), ""))
            out.append(env.get(name.group(), ""))
            i = name.end()
    return "".join(out)


def render(node, env: Mapping[str, str], refs: list[tuple[str, str]] | None = None):
    """The parsed compose file with every string value interpolated (keys are not, as in Compose)."""
    if isinstance(node, str):
        return interpolate(node, env, refs)
    if isinstance(node, dict):
        return {k: render(v, env, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [render(v, env, refs) for v in node]
    return node


# Fixtures and helpers ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    """Rendered with an empty environment: every variable at its documented local default."""
    return render(raw, {})


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.strip().partition("==")
            out[name.lower().replace("_", "-")] = version
    return out


@pytest.fixture(scope="module")
def init_sql() -> dict:
    text = INIT_SQL.read_text()
    getenv = dict(re.findall(r"^\\getenv\s+(\w+)\s+(\w+)\s*$", text, re.M))  # psql variable -> environment variable
    roles = dict(re.findall(r"^CREATE ROLE (\w+) LOGIN PASSWORD :'(\w+)';", text, re.M))  # role -> psql variable
    owners = dict(re.findall(r"^CREATE DATABASE (\w+) OWNER (\w+);", text, re.M))  # database -> role
    return {"getenv": getenv, "roles": roles, "owners": owners}


def buckets_made_by_minio_init(service: dict) -> set[str]:
    script = "\n".join(service["command"]) if isinstance(service["command"], list) else service["command"]
    return set(re.findall(r"mc mb (?:--ignore-existing )?\w+/([a-z0-9][a-z0-9.-]+)", script))


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """Short-syntax volumes as {source: (target, read_only)}."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        out[source] = (target, "ro" in mode)
    return out


def flags(service: dict) -> dict[str, str]:
    """--name=value arguments of a service's entrypoint + command."""
    argv = []
    for part in (service.get("entrypoint"), service.get("command")):
        argv += part.split() if isinstance(part, str) else (part or [])
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def dockerfile_lines() -> list[str]:
    """Instructions of the Dockerfile with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n", " ", "\n".join(li for li in DOCKERFILE.read_text().splitlines() if not li.lstrip().startswith("#"))
    )
    return [li.strip() for li in text.splitlines() if li.strip()]


def env_example_vars() -> set[str]:
    return set(re.findall(r"^#?\s*(_?[A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))


def script(service: dict) -> str:
    """The shell script a service runs (entrypoint + command joined)."""
    parts = []
    for part in (service.get("entrypoint"), service.get("command")):
        parts += [part] if isinstance(part, str) else (part or [])
    return "\n".join(parts)


# The file as a whole ----------------------------------------------------------------------------------------------


def test_compose_spec_file_with_every_service(raw):
    assert "version" not in raw, "the Compose spec has no `version:` key (Compose warns that it is obsolete)"
    assert EXPECTED_SERVICES <= set(raw["services"]), EXPECTED_SERVICES - set(raw["services"])


def test_depends_on_names_existing_services_with_conditions_they_can_meet(compose):
    services = compose["services"]
    graph = {}
    for name, service in services.items():
        deps = service.get("depends_on", {})
        deps = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        graph[name] = set(deps)
        for dep, how in deps.items():
            assert dep in services, f"{name} depends on {dep}, which is not a service"
            assert dep != name, f"{name} depends on itself"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            elif how["condition"] == "service_completed_successfully":
                assert dep in ONE_SHOT and services[dep].get("restart", "no") == "no", (
                    f"{name} waits for {dep} to complete; it must be a one-shot service that is not restarted"
                )
            else:
                assert how["condition"] == "service_started", how
    # no cycle: Compose refuses to start one
    done: set[str] = set()
    while len(done) < len(graph):
        ready = {n for n, deps in graph.items() if n not in done and deps <= done}
        assert ready, f"depends_on cycle among {sorted(set(graph) - done)}"
        done |= ready
    # every Airflow component starts after the migration and after the services its tasks call
    for name in AIRFLOW_COMPONENTS:
        assert {"airflow-init", "postgres", "mlflow", "minio-init"} <= graph[name], (name, graph[name])


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", name
        else:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
            assert service.get("restart") in ("always", "unless-stopped"), name


def test_every_variable_has_a_default_and_batchml_ones_are_real_settings(raw):
    refs: list[tuple[str, str]] = []
    render(raw, {}, refs)  # also fails on a lone `$` or an unclosed `${`
    without_default = sorted({name for name, op in refs if op not in (":-", "-")})
    assert not without_default, f"variables without a ${{VAR:-default}}: {without_default}"
    documented = env_example_vars()
    batchml = {name for name, _ in refs if name.startswith("BATCHML_")}
    assert batchml, "the compose file should let BATCHML_* settings be overridden"
    assert batchml <= documented, f"not in .env.example: {sorted(batchml - documented)}"


def test_credentials_are_never_literal(raw):
    """Every password, secret or key in an environment comes from a variable."""
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"(PASSWORD|SECRET|_KEY|KEY_ID)$", key):
                assert value is None or "${" in str(value), f"{name}: {key} is written into the file"
    for url in (
        raw["x-airflow-env"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        raw["x-airflow-env"]["BATCHML_WAREHOUSE_URL"],
        flags(raw["services"]["mlflow"])["backend-store-uri"],
        raw["x-airflow-env"]["AIRFLOW__CELERY__BROKER_URL"],
        raw["x-airflow-env"]["AIRFLOW__CELERY__RESULT_BACKEND"],
    ):
        assert re.search(r"://\w*:\$\{\w+:-[^}]*\}@", url), f"the password of {url} is not a variable"


# Airflow ----------------------------------------------------------------------------------------------------------


def test_airflow_services_mount_the_code_and_agree_on_executor_db_and_secrets(compose):
    services = compose["services"]
    shared = {}
    for name in [*AIRFLOW_COMPONENTS, "airflow-init"]:
        service, env = services[name], services[name]["environment"]
        vols = mounts(service)
        for folder in ("dags", "plugins", "include", "specs"):
            assert f"./{folder}" in vols, f"{name} does not mount {folder}/"
            assert vols[f"./{folder}"][1], f"{name} should mount {folder}/ read-only"
        assert vols["./dags"][0] == env["AIRFLOW__CORE__DAGS_FOLDER"], name
        assert vols["./plugins"][0] == env["AIRFLOW__CORE__PLUGINS_FOLDER"], name
        assert vols["./specs"][0] == env["BATCHML_SPECS_DIR"], name
        assert env["AIRFLOW__CORE__EXECUTOR"] in EXECUTORS, name
        assert service["build"] == {"context": ".", "dockerfile": "docker/Dockerfile"}, name
        for key in (
            "AIRFLOW__CORE__EXECUTOR",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            "AIRFLOW__API_AUTH__JWT_SECRET",
            "AIRFLOW__API__SECRET_KEY",
            "AIRFLOW__CORE__FERNET_KEY",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
            "image",
        ):
            value = service["image"] if key == "image" else env[key]
            assert shared.setdefault(key, value) == value, f"{name} disagrees on {key}"
        # the data lake: one volume at BATCHML_HOME in every component (tasks of any component share it)
        data = [target for source, (target, _) in vols.items() if not source.startswith(".")]
        assert env["BATCHML_HOME"] in data, name
    for name, subcommand in AIRFLOW_COMPONENTS.items():
        assert services[name]["command"] == subcommand, name


def test_tasks_reach_the_execution_api_of_the_api_server(compose):
    services = compose["services"]
    url = urlsplit(services["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname == "airflow-apiserver" and url.port == 8080 and url.path.rstrip("/") == "/execution"
    assert any(str(port).endswith("8080:8080") for port in services["airflow-apiserver"]["ports"])
    assert "api/v2" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])


def test_include_mount_is_the_package_the_image_installed_editable(compose):
    """batchml's REPO_ROOT is include/..; the image must install it editable from the folder include/ is mounted in."""
    lines = dockerfile_lines()
    workdirs = [li.split(None, 1)[1] for li in lines if li.startswith("WORKDIR ")]
    assert workdirs == ["/opt/batchml"]
    assert any(re.search(r"pip install .*-e \.(\s|$)", li) for li in lines), "pip install -e . is missing"
    for name in AIRFLOW_COMPONENTS:
        target = mounts(compose["services"][name])["./include"][0]
        assert Path(target).parent == Path(workdirs[0]), (name, target)


def test_airflow_init_migrates_sets_the_ui_password_and_checks_settings(compose):
    init = compose["services"]["airflow-init"]
    script = "\n".join(init["command"])
    assert "airflow db migrate" in script
    assert "batchml check" in script
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    pw_file = init["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    auth_volume = [s for s, (t, ro) in mounts(init).items() if t == str(Path(pw_file).parent) and not ro]
    assert auth_volume, "airflow-init must write the passwords file on a volume"
    api = compose["services"]["airflow-apiserver"]
    assert mounts(api).get(auth_volume[0]) == (str(Path(pw_file).parent), False), (
        "the API server needs the passwords file, read-write (SimpleAuthManager opens it for update)"
    )


# Versions ---------------------------------------------------------------------------------------------------------


def test_dockerfile_base_image_matches_the_airflow_pin_and_python(pins):
    lines = dockerfile_lines()
    froms = [li for li in lines if li.startswith("FROM ")]
    assert len(froms) == 1, froms
    m = re.fullmatch(r"FROM apache/airflow:(?:slim-)?(?P<airflow>\d+\.\d+\.\d+)-python(?P<python>3\.\d+)", froms[0])
    assert m, froms[0]
    assert m["airflow"] == pins["apache-airflow"], "docker/Dockerfile and requirements.txt disagree on Airflow"
    assert m["airflow"] == pins["apache-airflow-core"]
    requires = re.search(r'requires-python = "(.+)"', (REPO / "pyproject.toml").read_text())[1]
    assert f">={m['python']}" in requires, (m["python"], requires)
    run = " ".join(li for li in lines if li.startswith("RUN "))
    assert re.search(r"pip install .*-r requirements\.txt", run)
    assert re.search(r"apt-get install .*jre", run), "pyspark needs a Java runtime"
    assert "pyspark==" in run, "the full pyspark must be reinstalled over pyspark-client, as bin/bootstrap does"


def test_mlflow_server_runs_the_pinned_mlflow(compose, pins):
    mlflow = compose["services"]["mlflow"]
    assert "mlflow" in pins
    image = mlflow["image"]
    if mlflow.get("build"):
        # built from the batchml image: its mlflow comes from requirements.txt
        assert mlflow["build"]["dockerfile"] == "docker/Dockerfile"
        assert image == compose["services"]["airflow-scheduler"]["image"]
        assert any(re.search(r"pip install .*-r requirements\.txt", li) for li in dockerfile_lines())
    else:
        tag = image.rsplit(":", 1)[1].lstrip("v")
        assert "mlflow" in image and tag == pins["mlflow"], f"{image} is not mlflow {pins['mlflow']}"
    assert [*mlflow["entrypoint"], *mlflow["command"]][:2] == ["mlflow", "server"]


# Services and the URLs that point at them -------------------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, CUSTOM_ENV], ids=["defaults", "overrides"])
def test_database_urls_match_the_roles_and_databases_init_sql_creates(raw, init_sql, env):
    compose = render(raw, env)
    postgres = compose["services"]["postgres"]
    assert int(postgres["image"].split(":")[1].split(".")[0]) >= 15, "init.sql uses psql's \\getenv (PostgreSQL 15+)"
    assert "./docker/postgres/init.sql" in mounts(postgres) and mounts(postgres)["./docker/postgres/init.sql"][
        0
    ].startswith("/docker-entrypoint-initdb.d/")
    pg_env = postgres["environment"]
    urls = {
        "Airflow metadata": compose["services"]["airflow-scheduler"]["environment"][
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
        ],
        "warehouse": compose["services"]["airflow-scheduler"]["environment"]["BATCHML_WAREHOUSE_URL"],
        "MLflow backend": flags(compose["services"]["mlflow"])["backend-store-uri"],
    }
    for what, url in urls.items():
        parts = urlsplit(url)
        assert parts.scheme.split("+")[0] == "postgresql", (what, url)
        assert parts.hostname == "postgres" and (parts.port or 5432) == 5432, (what, url)
        database = parts.path.lstrip("/")
        assert database in init_sql["owners"], f"{what}: database {database!r} is not created by init.sql"
        role = init_sql["owners"][database]
        assert parts.username == role, f"{what}: connects as {parts.username!r}, the owner is {role!r}"
        password_var = init_sql["getenv"][init_sql["roles"][role]]
        assert parts.password == pg_env[password_var], f"{what}: password differs from {password_var} of postgres"
    # psycopg (v3) for the warehouse, psycopg2 for Airflow and MLflow: both are pinned
    assert urls["warehouse"].startswith("postgresql+psycopg://")


def test_rendered_batchml_settings_validate_and_point_at_the_services(compose, init_sql, monkeypatch):
    services = compose["services"]
    env = services["airflow-scheduler"]["environment"]
    for key in Settings.model_fields:
        monkeypatch.delenv(f"BATCHML_{key.upper()}", raising=False)
    batchml = {k: v for k, v in env.items() if k.startswith("BATCHML_")}
    known = {f"BATCHML_{f.upper()}" for f in Settings.model_fields} | env_example_vars()
    assert set(batchml) <= known, f"unknown batchml variables: {sorted(set(batchml) - known)}"
    for key, value in batchml.items():
        monkeypatch.setenv(key, value)
    settings = get_settings()  # raises SettingsError naming the variable if a value is invalid

    tracking = urlsplit(settings.mlflow_tracking_uri)
    mlflow_port = int(flags(services["mlflow"])["port"])
    assert (tracking.scheme, tracking.hostname, tracking.port) == ("http", "mlflow", mlflow_port)
    buckets = buckets_made_by_minio_init(services["minio-init"])
    assert settings.landing_is_s3 and urlsplit(settings.landing_url).hostname in buckets, settings.landing_url
    assert urlsplit(settings.mlflow_artifact_root).scheme == "s3"
    assert urlsplit(settings.mlflow_artifact_root).hostname in buckets, settings.mlflow_artifact_root
    assert urlsplit(settings.warehouse_url).path.lstrip("/") in init_sql["owners"]
    assert str(settings.specs_dir) == env["BATCHML_SPECS_DIR"]
    assert settings.data_root.is_relative_to(env["BATCHML_HOME"])


@pytest.mark.parametrize("env", [{}, CUSTOM_ENV], ids=["defaults", "overrides"])
def test_s3_clients_use_minio_with_its_credentials(raw, env):
    services = render(raw, env)["services"]
    minio = services["minio"]["environment"]
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses a root password shorter than 8 characters"
    api_port = 9000
    for name in ("airflow-scheduler", "mlflow"):
        client = services[name]["environment"]
        assert client["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"], name
        assert client["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
        endpoints = [client["MLFLOW_S3_ENDPOINT_URL"]] + ([client["AWS_ENDPOINT_URL"]] if name != "mlflow" else [])
        for endpoint in endpoints:
            assert (urlsplit(endpoint).hostname, urlsplit(endpoint).port) == ("minio", api_port), (name, endpoint)
    init = services["minio-init"]
    assert init["environment"] == {k: minio[k] for k in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")}
    assert f"http://minio:{api_port}" in "\n".join(init["command"])


def test_mlflow_server_stores_and_accepts_the_host_name_tasks_use(compose):
    services = compose["services"]
    mlflow = services["mlflow"]
    opts = flags(mlflow)
    assert opts["host"] == "0.0.0.0"
    destination = urlsplit(opts["artifacts-destination"])
    assert destination.scheme == "s3" and destination.hostname in buckets_made_by_minio_init(services["minio-init"])
    # MLflow 3 rejects requests whose Host header is not allowed; tasks send "mlflow:<port>", the healthcheck localhost
    allowed = [h.strip() for h in mlflow["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")]
    tracking = urlsplit(services["airflow-scheduler"]["environment"]["BATCHML_MLFLOW_TRACKING_URI"])
    for host in (tracking.netloc, f"localhost:{opts['port']}"):
        assert any(fnmatch.fnmatch(host, pattern) for pattern in allowed), f"{host} not in {allowed}"
    assert f"localhost:{opts['port']}" in " ".join(mlflow["healthcheck"]["test"])


def test_default_spark_connection_parses_to_a_spark_master(compose):
    """What the apache-spark provider's @task.pyspark does with the connection: host[:port] becomes spark.master."""
    from airflow.models.connection import Connection

    uri = compose["services"]["airflow-scheduler"]["environment"]["AIRFLOW_CONN_BATCHML_SPARK"]
    conn = Connection(conn_id="batchml_spark", uri=uri)
    master = f"{conn.host}:{conn.port}" if conn.port else conn.host
    assert conn.conn_type == "spark"
    assert re.fullmatch(r"local(\[(\*|\d+)\])?|spark://[\w.-]+:\d+", master), master
    assert all(key.startswith("spark.") for key in conn.extra_dejson), conn.extra_dejson
    # the cluster form the compose file documents must keep its scheme once parsed
    documented = re.search(r"spark%3A%2F%2F[\w.-]+:\d+", COMPOSE.read_text())[0]
    cluster = Connection(conn_id="c", uri=f"spark://{documented}")
    assert f"{cluster.host}:{cluster.port}" == "spark://spark-master:7077"


# The file as a whole, continued: variables, images, mounts ----------------------------------------------------------


def test_every_variable_is_documented_in_env_example(raw):
    refs: list[tuple[str, str]] = []
    render(raw, {}, refs)
    used = {name for name, _ in refs}
    missing = used - env_example_vars()
    assert not missing, f"variables of docker-compose.yaml not in .env.example: {sorted(missing)}"


def test_no_password_or_secret_has_a_working_default(raw):
    """Credentials default to empty, and whatever consumes them refuses an empty one (MinIO keeps its local-only
    default: its 8+ characters are asserted above)."""
    defaults = dict(re.findall(r"\$\{(\w+):-([^}$]*)\}", COMPOSE.read_text()))
    credentials = {name for name in defaults if re.search(r"(PASSWORD|SECRET|SECRET_KEY)$", name)}
    assert {"SPARK_AUTH_SECRET", "REDIS_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET"} <= credentials
    working = {name: defaults[name] for name in credentials - {"MINIO_ROOT_PASSWORD"} if defaults[name]}
    assert not working, f"credentials with a working default: {working}"
    services = raw["services"]
    for name in ("spark-master", "spark-worker"):
        assert "${SPARK_AUTH_SECRET:?" in interpolate(script(services[name]), {}), name
    assert "${REDIS_PASSWORD:?" in interpolate(script(services["redis"]), {})
    init = interpolate(script(services["airflow-init"]), {})
    for var in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "_AIRFLOW_WWW_USER_PASSWORD"):
        assert var in init.split("airflow db migrate")[0], f"airflow-init does not refuse an empty {var}"
    sql = INIT_SQL.read_text()
    assert "\\if :missing_password" in sql and "ON_ERROR_STOP on" in sql, "init.sql accepts empty role passwords"
    for getenv in re.findall(r"^\\getenv\s+(\w+)\s+\w+", sql, re.M):
        assert f":'{getenv}' = ''" in sql, f"init.sql does not check {getenv}"


def test_every_image_is_pinned(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image and ":" in image, f"{name}: image without a tag"
        repo, tag = image.rsplit(":", 1)
        if service.get("build"):
            assert service["build"]["dockerfile"] == "docker/Dockerfile" and image == "batchml-airflow:local", name
        else:
            assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"


def test_mounted_folders_and_files_exist(compose):
    for name, service in compose["services"].items():
        for source in mounts(service):
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"


# Spark cluster and Celery profile (the topology of `bin/stack up [--celery]`) ---------------------------------------


def test_spark_cluster_runs_the_pinned_pyspark_with_shared_secret_authentication(raw, pins):
    from airflow.models.connection import Connection

    services = render(raw, {"SPARK_AUTH_SECRET": "spark-secret-1"})["services"]
    scheduler = services["airflow-scheduler"]
    for name in SPARK:
        spark = services[name]
        # the batchml image: pyspark from requirements.txt (the Dockerfile reinstalls the pinned full pyspark)
        assert spark["build"] == scheduler["build"] and spark["image"] == scheduler["image"], name
        assert spark["environment"]["SPARK_AUTH_SECRET"] == "spark-secret-1", name
        text = script(spark)
        assert "spark.authenticate true" in text and "spark.authenticate.secret" in text, name
        assert "--properties-file" in text and "bin/spark-class" in text, name
        assert spark.get("healthcheck") and spark.get("restart") == "unless-stopped", name
    assert "pyspark" in pins and pins["pyspark"].startswith("4.")
    master, worker = script(services["spark-master"]), script(services["spark-worker"])
    assert "org.apache.spark.deploy.master.Master" in master and "--port 7077" in master
    assert "org.apache.spark.deploy.worker.Worker spark://spark-master:7077" in worker
    # the connection every task uses: this master, this secret
    conn = Connection(conn_id="batchml_spark", uri=scheduler["environment"]["AIRFLOW_CONN_BATCHML_SPARK"])
    assert f"{conn.host}:{conn.port}" == "spark://spark-master:7077"
    assert str(conn.extra_dejson["spark.authenticate"]).lower() == "true"  # the URI form parses it to True
    assert conn.extra_dejson["spark.authenticate.secret"] == "spark-secret-1"
    for name in AIRFLOW_COMPONENTS:
        assert services[name]["depends_on"]["spark-master"]["condition"] == "service_healthy", name
    # executors see the data lake and the code at the drivers' paths
    assert mounts(services["spark-worker"])["batchml-data"][0] == scheduler["environment"]["BATCHML_HOME"]
    assert mounts(services["spark-worker"])["./include"] == mounts(scheduler)["./include"]


def test_celery_profile_adds_a_password_protected_broker_and_a_worker(raw, pins):
    env = {"AIRFLOW_EXECUTOR": "CeleryExecutor", "REDIS_PASSWORD": "redis-secret-2", "AIRFLOW_DB_PASSWORD": "af-3"}
    services = render(raw, env)["services"]
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == CELERY_PROFILE and all(services[n]["profiles"] == ["celery"] for n in profiled)
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "redis-secret-2"
    assert "requirepass" in script(services["redis"])
    for name in AIRFLOW_COMPONENTS:
        service_env = services[name]["environment"]
        assert service_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = urlsplit(service_env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port, broker.password) == (
            "redis", "redis", 6379, "redis-secret-2"), name
        backend = urlsplit(service_env["AIRFLOW__CELERY__RESULT_BACKEND"].removeprefix("db+"))
        assert (backend.username, backend.password, backend.hostname, backend.path) == (
            "airflow", "af-3", "postgres", "/airflow"), name
        redis_dep = services[name]["depends_on"]["redis"]
        assert redis_dep == {"condition": "service_healthy", "required": False}, name
    assert services["airflow-worker"]["command"] == "celery worker"
    assert "celery" in " ".join(services["airflow-worker"]["healthcheck"]["test"])
    assert render(raw, {})["services"]["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    for package in ("apache-airflow-providers-celery", "celery", "redis"):
        assert package in pins, f"{package} is not pinned in requirements.txt"
    extras = re.search(r"\[project\.optional-dependencies\](.*?)(\n\[|\Z)", (REPO / "pyproject.toml").read_text(), re.S)
    assert extras and re.search(r'^celery = \[.*"apache-airflow-providers-celery"', extras[1], re.M)

