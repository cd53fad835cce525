"""The training DAG of a use case (`<name>__training`) and its model-admin DAG (`<name>__model_admin`).

Training, for training date T: ensure_feature_snapshots -> build_training_set -> train_candidates ->
evaluate_models -> register_and_gate. Large objects (training sets, fitted models, plots) stay in the run folder
`<data_root>/training/<name>/<run>/`; tasks pass that folder's path. The registry is touched only by the last task,
so a failure anywhere before it leaves the registry unchanged.
"""

from __future__ import annotations

from pathlib import Path

from batchml.pipelines.common import asset, run_date, run_label, spark_for, step, wait_for_input
from batchml.results import (
    AdminResult,
    EvaluatedModel,
    GateResult,
    SelectedModel,
    SnapshotsReady,
    TrainingRequest,
    TrainingSetRef,
)
from batchml.settings import Settings
from batchml.specs import UseCaseSpec


def run_dir(spec: UseCaseSpec, settings: Settings, label: str) -> Path:
    return settings.data_root / "training" / spec.name / label


def training_request(context) -> TrainingRequest:
    """Why and for which date a training run happens: the newest retrain-request asset event, else the params."""
    from batchml.pipelines.common import triggering_extra

    params = dict(context.get("params") or {})
    event = triggering_extra(context, "training_date")
    if event:
        return TrainingRequest.model_validate({k: event[k] for k in TrainingRequest.model_fields if k in event})
    return TrainingRequest(training_date=run_date(context, param="training_date"),
                           trigger=params.get("trigger") or "schedule_or_manual", reason=params.get("reason") or "",
                           figures=params.get("figures"))


_TRAINING_DOC = """
For the training date **T** (logical date, or the `training_date` param):

0. `wait_for_input` (scheduled runs only): waits until the raw data of the newest snapshot and its labels have landed.
{steps}
3. `train_candidates`: {candidates}, tuned with Optuna ({trials} trials / {timeout} s per candidate).
4. `evaluate_models`: test-window metrics, calibration, lift, segments, SHAP.
5. `register_and_gate`: MLflow run + registered version; champion only if it clears {floors} and beats the champion
   by {margin} {metric} on the same test window; model card written and logged.

Runs on its schedule, on demand, and when `{name}__monitoring` emits a `{name}.retrain_request` asset event (whose
reason and figures end up on the MLflow run).

Params: `training_date`, `trials`, `timeout_seconds`, `reason` (recorded on the MLflow run).
"""


def _training_doc(spec: UseCaseSpec) -> str:
    tr = spec.training
    if tr.split.kind == "random":
        steps = (f"1. `ensure_feature_snapshots`: the feature partition of T exists (built from the newest snapshot "
                 f"landed before T).\n2. `build_training_set`: its rows with the label column, split at random, "
                 f"stratified (seed {tr.split.seed}): {tr.split.validation:.0%} validation, {tr.split.test:.0%} test.")
    else:
        steps = (f"1. `ensure_feature_snapshots`: the planned snapshots (every {tr.split.every_days} days, the newest "
                 f"T-{spec.horizon_days}d) have feature\n   partitions; missing ones are built, checked and published "
                 f"like the feature DAG does.\n2. `build_training_set`: snapshots joined with labels matured before T; "
                 f"split by time\n   ({tr.split.train} train / {tr.split.validation} validation / {tr.split.test} test "
                 f"snapshots, purged: {tr.split.purge}).")
    return _TRAINING_DOC.format(
        steps=steps, candidates=", ".join(f"{c.name} ({c.kind})" for c in tr.candidates),
        trials=tr.tuning.trials, timeout=tr.tuning.timeout_seconds, floors=tr.gate.floors, margin=tr.gate.margin,
        metric=tr.gate.metric, name=spec.name)


def build_training_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import Param, dag, get_current_context, task

    from batchml.pipelines.common import assets_or_cron, dag_args

    tr = spec.training
    model_asset = asset(spec, "model")
    # weekly (or as the spec says), and whenever monitoring requests a retrain
    schedule = assets_or_cron(asset(spec, "retrain_request"), tr.schedule)

    @dag(**dag_args(
        spec, "training", _training_doc(spec), schedule, max_active_runs=1,
        params={
            "training_date": Param(None, type=["null", "string"], format="date",
                                   description="Training date T (YYYY-MM-DD). Empty: the run's logical date."),
            "trials": Param(None, type=["null", "integer"], minimum=1, maximum=1000,
                            description=f"Tuning trials per candidate. Empty: the spec's {tr.tuning.trials}."),
            "timeout_seconds": Param(None, type=["null", "integer"], minimum=1, maximum=86400,
                                     description="Tuning seconds per candidate. Empty: the spec's budget."),
            "reason": Param(None, type=["null", "string"], maxLength=2000,
                            description="Optional: why this run (recorded on the MLflow run and in the model card)."),
            "trigger": Param("schedule_or_manual", type="string", enum=["schedule_or_manual", "drift", "decay"],
                             description="Set by the monitoring DAG when it requests a retrain."),
            "figures": Param(None, type=["null", "object"], description="Monitoring figures behind a retrain request."),
        },
    ))
    def training_dag():
        @task
        @step
        def ensure_feature_snapshots() -> SnapshotsReady:
            from batchml.datasets import ensure_snapshots

            context = get_current_context()
            return ensure_snapshots(lambda: spark_for(settings, context), spec, settings,
                                    training_request(context).training_date, run_label(context))

        @task
        @step
        def build_training_set(ready: SnapshotsReady) -> TrainingSetRef:
            from batchml.datasets import prepare_training_set

            folder = run_dir(spec, settings, run_label(get_current_context()))
            return prepare_training_set(spec, settings, ready.training_date, folder)

        @task
        @step
        def train_candidates(ref: TrainingSetRef) -> SelectedModel:
            from batchml.training import train_candidates as train

            params = get_current_context()["params"]
            return train(spec, ref, params.get("trials"), params.get("timeout_seconds"))

        @task
        @step
        def evaluate_models(selected: SelectedModel) -> EvaluatedModel:
            from batchml.evaluation import evaluate

            return evaluate(spec, selected)

        @task(outlets=[model_asset])
        @step
        def register_and_gate(evaluated: EvaluatedModel) -> GateResult:
            from batchml.gate import register_and_gate as register

            context = get_current_context()
            result = register(spec, settings, evaluated, str(context["run_id"]), training_request(context))
            context["outlet_events"][model_asset].extra = result.model_dump(
                mode="json", include={"model_name", "version", "verdict"})
            return result

        ready = ensure_feature_snapshots()
        wait_for_input(spec, settings, "training", lambda context: training_request(context).training_date) >> ready
        register_and_gate(evaluate_models(train_candidates(build_training_set(ready))))

    return training_dag()


_ADMIN_DOC = """
Manual model administration, recorded in `model_registry_events` like the gate's decisions:

* `action=promote`, `version=N`: make version N the champion.
* `action=rollback`: give the champion alias back to the previous champion.

Trigger it from the UI with the params (a `reason` is required).
"""


def build_model_admin_dag(spec: UseCaseSpec, settings: Settings):
    from airflow.sdk import Param, dag, get_current_context, task

    from batchml.pipelines.common import dag_args, default_args

    @dag(**dag_args(
        spec, "model_admin", _ADMIN_DOC, None, max_active_runs=1, default_args={**default_args(spec), "retries": 0},
        params={
            "action": Param("promote", type="string", enum=["promote", "rollback"],
                            description="promote: make `version` the champion; rollback: give the champion alias "
                                        "back to the previous champion."),
            "version": Param(None, type=["null", "integer"], minimum=1,
                             description="The version to promote (action=promote); ignored by rollback."),
            "reason": Param("", type="string", minLength=3, maxLength=2000,
                            description="Required: why you change the champion (at least 3 characters). It is "
                                        "recorded with the change in model_registry_events and on the version."),
        },
    ))
    def model_admin_dag():
        @task
        @step
        def apply_admin_action() -> AdminResult:
            from batchml.gate import admin_action

            context = get_current_context()
            params = context["params"]
            actor = getattr(context["dag_run"], "triggering_user_name", None) or "airflow"
            return admin_action(spec, settings, params["action"], params.get("version"), params.get("reason", ""),
                                str(actor), str(context["run_id"]))

        apply_admin_action()

    return model_admin_dag()


def training_dags() -> dict[str, object]:
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("training"): build_training_dag(spec, settings) for spec in specs}


def model_admin_dags() -> dict[str, object]:
    from batchml.pipelines.common import load_all

    settings, specs = load_all()
    return {spec.dag_id("model_admin"): build_model_admin_dag(spec, settings) for spec in specs}
