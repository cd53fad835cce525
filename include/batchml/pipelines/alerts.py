"""Alerts: an Airflow notifier that logs, and posts to a webhook connection when one is configured.

Used as every generated DAG's `on_failure_callback` and by the monitoring DAG when drift crosses an alert
threshold. `BATCHML_ALERT_CONN_ID` names an Airflow HTTP connection (e.g. a Slack incoming webhook: host
`https://hooks.slack.com`, endpoint in the connection's extra `{"endpoint": "/services/..."}`); without it, alerts
go to the task log only. Airflow's own notifiers (SMTP, Slack, ...) can be added to the DAGs the same way.
"""

from __future__ import annotations

import logging

from airflow.sdk import BaseNotifier

log = logging.getLogger("batchml.alerts")


class BatchMLNotifier(BaseNotifier):
    """Log an alert; also POST it as JSON `{"text": ...}` to the HTTP connection `conn_id`, if set."""

    template_fields = ("message",)

    def __init__(self, message: str = "", conn_id: str | None = None):
        super().__init__()
        self.message = message
        if conn_id is None:
            from batchml.settings import get_settings

            conn_id = get_settings().alert_conn_id
        self.conn_id = conn_id

    def notify(self, context) -> None:
        text = self.message or _default_message(context)
        log.warning("ALERT: %s", text)
        if not self.conn_id:
            return
        from airflow.providers.http.hooks.http import HttpHook

        hook = HttpHook(method="POST", http_conn_id=self.conn_id)
        endpoint = (hook.get_connection(self.conn_id).extra_dejson or {}).get("endpoint", "")
        hook.run(endpoint=endpoint, json={"text": text})


def _default_message(context) -> str:
    ti = context.get("ti")
    where = f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')}" if ti else "a task"
    return f"batchml: {where} failed in run {context.get('run_id', '?')}: {context.get('exception', '')}"[:3000]


def on_failure() -> list:
    """The failure callbacks every generated DAG gets."""
    return [BatchMLNotifier()]
