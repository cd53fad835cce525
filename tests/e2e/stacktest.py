"""Helpers of the e2e tests of the no-Docker stack: `RunningStack` (what the `stack` fixture yields) and its clients.
Import them as `from stacktest import RunningStack` (pytest puts tests/e2e on sys.path when it loads its conftest)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_STACK = REPO / "bin" / "stack"
UP_TIMEOUT = 420  # seconds; `up` itself gives up earlier (--timeout) and says which service is not healthy
POLL = 0.5  # seconds between two looks at something the tests wait for (each look is one cheap API call)


def write_stack_specs(folder: Path) -> Path:
    """The specs the stack's Airflow generates DAGs from in the tests: the churn spec with a budget that fits a test
    (a compact split, two tuning trials, scoring and monitoring as in the real spec). Training runs when asked, or
    when monitoring requests it (no weekly schedule), and scheduled runs poll for late data every minute."""
    import yaml

    data = yaml.safe_load((REPO / "specs" / "churn.yaml").read_text())
    data["training"].update(
        schedule=None, split={"every_days": 7, "train": 4, "validation": 1, "test": 1, "purge": False},
        tuning={"trials": 2, "timeout_seconds": 20, "metric": "roc_auc", "early_stopping_rounds": 20},
        min_rows=300, min_positives=10, shap_sample=300)
    data["wait"] = {"timeout_hours": 12, "poke_minutes": 1}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "churn.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def missing_requirement(celery: bool = False) -> str | None:
    """Why the stack cannot start here (what to install), or None."""
    from batchml.stack import Stack, StackError

    try:
        Stack(Path(tempfile.gettempdir()) / "batchml-stack-probe").check_requirements(celery)
    except StackError as exc:
        return str(exc)
    return None


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ApiClient:
    """requests against one base URL with fixed headers: `api.get("/api/v2/dags")`."""

    def __init__(self, base: str, headers: dict[str, str] | None = None):
        import requests

        self.base = base.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers or {})

    def request(self, method: str, path: str, **kwargs):
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs):
        return self.request("PATCH", path, **kwargs)


class RunningStack:
    """A stack started by `bin/stack up` in `root`; every property re-reads the state folder (it survives restarts)."""

    def __init__(self, root: Path):
        self.root = root
        self.up_output = ""

    @property
    def state(self):
        from batchml.stack import Stack

        return Stack(self.root)

    @property
    def env(self) -> dict[str, str]:
        return self.state.env

    @property
    def urls(self) -> dict[str, str]:
        return self.state.urls

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.state.ports)

    def cli(self, *args: str, timeout: float = UP_TIMEOUT, env: dict | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "BATCHML_STACK_DIR": str(self.root), **(env or {})}
        return subprocess.run([str(BIN_STACK), *args], capture_output=True, text=True, env=env, timeout=timeout)

    def up(self, *args: str, env: dict | None = None) -> None:
        done = self.cli("up", "--timeout", str(UP_TIMEOUT - 60), *args, env=env)
        self.up_output = done.stdout
        if done.returncode != 0:
            pytest.fail(f"bin/stack up {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")

    @property
    def up_seconds(self) -> float:
        line = [li for li in self.up_output.splitlines() if li.startswith("healthy in ")]
        return float(line[-1].split()[2]) if line else float("nan")

    # Airflow ----------------------------------------------------------------------------------------------------

    def airflow_token(self) -> str:
        api = ApiClient(self.env["BATCHML_STACK_AIRFLOW_URL"])
        answer = api.post("/auth/token", json={"username": self.env["BATCHML_STACK_AIRFLOW_USERNAME"],
                                               "password": self.env["BATCHML_STACK_AIRFLOW_PASSWORD"]})
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["access_token"]

    def airflow_api(self, token: str | None = None) -> ApiClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return ApiClient(self.env["BATCHML_STACK_AIRFLOW_URL"], headers)

    def run_dag(self, dag_id: str, conf: dict | None = None, timeout: float = 300) -> tuple[dict, list[dict]]:
        """Unpause, trigger (no logical date) and wait until the run ends; returns (dag run, task instances)."""
        api = self.airflow_api(self.airflow_token())
        deadline = time.monotonic() + 60
        while api.get(f"/api/v2/dags/{dag_id}").status_code == 404:  # the DAG processor has not parsed it yet
            assert time.monotonic() < deadline, f"{dag_id} never showed up: {api.get('/api/v2/importErrors').text}"
            time.sleep(POLL)
        assert api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        created = api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        assert created.status_code == 200, created.text
        run_id = created.json()["dag_run_id"]
        deadline = time.monotonic() + timeout
        while True:
            run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
            if run["state"] in ("success", "failed"):
                break
            assert time.monotonic() < deadline, f"{dag_id} run {run_id} still {run['state']} after {timeout} s"
            time.sleep(POLL)
        tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        return run, tis

    def task_log(self, ti: dict) -> str:
        api = self.airflow_api(self.airflow_token())
        path = (f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}"
                f"/logs/{ti['try_number']}")
        answer = api.get(path, headers={"Accept": "application/json"})
        assert answer.status_code == 200, answer.text
        content = answer.json()["content"]
        return "\n".join(str(part.get("event", part)) if isinstance(part, dict) else str(part) for part in content)

    # Other clients ----------------------------------------------------------------------------------------------

    def s3(self, **overrides):
        import boto3

        env = self.env
        return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                            aws_access_key_id=overrides.get("key", env["AWS_ACCESS_KEY_ID"]),
                            aws_secret_access_key=overrides.get("secret", env["AWS_SECRET_ACCESS_KEY"]))

    def mlflow_auth(self) -> tuple[str, str]:
        return self.env["MLFLOW_TRACKING_USERNAME"], self.env["MLFLOW_TRACKING_PASSWORD"]


def chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(url: str, out: Path, cookies: list[dict] | None = None, wait_for: str | None = None,
               timeout: float = 90) -> Path:
    """A PNG of `url` in headless Chromium, driven through the DevTools protocol (cookies set first, e.g. Airflow's
    `_token`); waits until the page's text contains `wait_for`."""
    import base64
    import json
    import urllib.request

    from websockets.sync.client import connect

    port = _free_port()
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    proc = subprocess.Popen(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "--window-size=1400,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2).read())
                page = next(t for t in targets if t.get("type") == "page")
                break
            except Exception:  # noqa: BLE001 - Chromium is still starting
                assert time.monotonic() < deadline, "Chromium did not start"
                time.sleep(POLL)
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            counter = iter(range(1, 10_000))

            def call(method: str, **params):
                ident = next(counter)
                ws.send(json.dumps({"id": ident, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=timeout))
                    if message.get("id") == ident:
                        assert "error" not in message, message
                        return message.get("result", {})

            call("Network.enable")
            for cookie in cookies or []:
                call("Network.setCookie", **cookie)
            call("Page.enable")
            call("Page.navigate", url=url)
            deadline = time.monotonic() + timeout
            while True:
                text = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
                if wait_for is None or wait_for in text.get("result", {}).get("value", ""):
                    break
                assert time.monotonic() < deadline, f"{url} never showed {wait_for!r}"
                time.sleep(POLL)
            time.sleep(2)  # let charts finish drawing
            shot = call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        subprocess.run(["rm", "-rf", str(profile)], check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
