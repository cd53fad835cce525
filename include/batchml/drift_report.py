"""The drift report: one self-contained HTML page per monitored date, for the people who decide what to do about a
drift: a summary (the retraining decision, how many features drifted, the data's quality), the score's distribution,
the last days' trend from the monitoring table, realized performance, every feature's status against its thresholds
(with a legend), and histograms of the drifted and the most important features, named by feature."""

from __future__ import annotations

import re
from pathlib import Path

from batchml.reports import pyplot, render_page, save_figure
from batchml.results import RealizedPerformance, RetrainDecision
from batchml.specs import UseCaseSpec

SEVERITY = {"alert": 3, "warn": 2, "skipped": 1, "ok": 0, "info": 0}
MAX_HISTOGRAMS = 18


def thresholds(spec: UseCaseSpec) -> dict[str, dict[str, float]]:
    mon = spec.monitoring
    return {"psi": {"warn": mon.psi_warn, "alert": mon.psi_alert}, "ks": {"warn": mon.ks_warn, "alert": mon.ks_alert},
            "unseen": {"warn": mon.unseen_warn, "alert": mon.unseen_alert}}


def per_feature(details: dict, limits: dict, about: dict[str, str]) -> list[dict]:
    """One entry per feature: its words, importance rank, PSI, KS, unseen and null shares, its status (the worst of
    its statistics against their thresholds) and why; ranked by status, then PSI."""
    ranks = {row["feature"]: i + 1 for i, row in enumerate(details.get("importance", []))}
    names = {"psi": "psi", "ks_statistic": "ks", "unseen_share": "unseen", "null_share": "nulls"}
    by_feature: dict[str, dict] = {}
    for f in details["figures"]:
        if not f["feature"]:
            continue
        entry = by_feature.setdefault(f["feature"], {"feature": f["feature"], "status": "ok", "why": [], "detail": [],
                                                     "description": about.get(f["feature"], ""), "psi": None,
                                                     "ks": None, "unseen": None, "nulls": None})
        if f["metric"] in names:
            entry[names[f["metric"]]] = f["value"]
        if SEVERITY.get(f["status"], 0) > SEVERITY[entry["status"]]:
            entry["status"] = f["status"]
        short = names.get(f["metric"], f["metric"])
        if f["status"] in ("alert", "warn") and short in limits:
            entry["why"].append(f"{short.upper() if short != 'unseen' else 'unseen'} {f['value']:.3f} ≥ "
                                f"{limits[short][f['status']]}")
        if f["status"] == "skipped" or f["metric"] in ("chi_square", "ks_statistic") and f["detail"]:
            entry["detail"].append(f"{short}: {f['detail']}" if f["status"] != "skipped" else f["detail"])
    for name, entry in by_feature.items():
        entry["rank"] = ranks.get(name)
        entry["reference_nulls"] = details.get("reference_nulls", {}).get(name)
        entry["why"], entry["detail"] = "; ".join(entry["why"]), "; ".join(entry["detail"])
    return sorted(by_feature.values(), key=lambda e: (-SEVERITY[e["status"]], -(e.get("psi") or 0)))


def histogram_bins(hist: dict) -> tuple[list[str], list[float], list[float]]:
    """Labels and reference/today shares of a histogram's bins; bins empty on both sides at either end are left
    out (a profile of version 1 has an empty "<min" bin below its first decile edge)."""
    import numpy as np

    if hist["kind"] == "numeric":
        edges = hist["edges"]
        labels = (["<" + _short(edges[0])] + [f"{_short(a)}–{_short(b)}" for a, b in zip(edges, edges[1:], strict=False)]
                  + ["≥" + _short(edges[-1])]) if edges else ["all"]
    else:
        labels = list(hist["categories"])
    ref, cur = np.asarray(hist["ref"], dtype=float), np.asarray(hist["cur"], dtype=float)
    used = np.flatnonzero((ref > 0) | (cur > 0))
    if len(used):
        keep = slice(used[0], used[-1] + 1)
        labels, ref, cur = labels[keep], ref[keep], cur[keep]
    return labels, ref.tolist(), cur.tolist()


def _histogram(plt, name: str, hist: dict, folder: Path, title: str) -> Path:
    """Reference vs today, per bin, saved as `hist_<name>.png`."""
    import numpy as np

    labels, ref, cur = histogram_bins(hist)
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, ref, width=0.4, label="reference")
    ax.bar(x + 0.2, cur, width=0.4, label="today")
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("share of rows", fontsize=7)
    ax.set_title(title if len(title) <= 60 else title[:57] + "...", fontsize=8)
    ax.legend(fontsize=6)
    return save_figure(fig, folder / f"hist_{_file_safe(name)}.png")


def _history_chart(plt, past, limits: dict, folder: Path, last_day: str) -> Path | None:
    """Score PSI and the charted features' PSI over the last monitored dates, with the warn and alert lines."""
    if past is None or past.empty:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 3.2))
    score = past[past.metric == "score_psi"].sort_values("as_of_date")
    ax.plot(score.as_of_date, score.value, marker="o", linewidth=2.4, color="black", label="score")
    features = past[past.metric == "psi"]
    for name, part in features.groupby("feature", sort=False):
        part = part.sort_values("as_of_date")
        ax.plot(part.as_of_date, part.value, marker=".", linewidth=1.1, label=name)
    ax.axhline(limits["psi"]["warn"], color="#d4a72c", linestyle="--", linewidth=1, label="warn")
    ax.axhline(limits["psi"]["alert"], color="#cf222e", linestyle="--", linewidth=1, label="alert")
    ax.set_ylabel("PSI vs reference", fontsize=8)
    ax.set_title(f"PSI of the score and of the top features, monitored dates up to {last_day}", fontsize=9)
    ax.tick_params(axis="both", labelsize=7)
    fig.autofmt_xdate()
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_figure(fig, folder / "history_psi.png")


def _short(v: float) -> str:
    return f"{v:.3g}"


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _decision(decision: RetrainDecision) -> tuple[str, str]:
    if decision.request:
        return f"requested (training date {decision.training_date})", "requested"
    if decision.scheduled_for:
        return f"scheduled for {decision.scheduled_for}, when the drift's labels have matured", "scheduled"
    if decision.suppressed:
        return f"not requested ({decision.suppressed})", "suppressed"
    return "no trigger", "quiet"


def render_drift_report(spec: UseCaseSpec, details: dict, performance: RealizedPerformance,
                        decision: RetrainDecision, plots_dir: Path, out: Path, past=None) -> Path:
    """Render the drift report of one date (`details`: what compute_drift wrote; `past`: the monitoring table's
    recent PSI figures, see `monitoring_table.history`) into `out`."""
    from batchml.reason_codes import feature_words

    plt = pyplot()
    limits = thresholds(spec)
    about = {name: words.description for name, words in feature_words(spec).items()}
    features = per_feature(details, limits, about)
    figures = {f["metric"]: f for f in details["figures"] if not f["feature"]}
    score_psi = details["summary"]["score_psi"]
    plots = {"score": _histogram(plt, "score", details["histograms"]["score"], plots_dir,
                                 "score: reference vs today")}
    history = _history_chart(plt, past, limits, plots_dir, details["as_of"])
    if history:
        plots["history"] = history
    importance = [row["feature"] for row in details.get("importance", [])]
    shown = [e["feature"] for e in features if e["status"] in ("alert", "warn")][:12]
    shown += [f for f in importance[:6] if f not in shown]
    charts = []
    for name in shown[:MAX_HISTOGRAMS]:
        if name in details["histograms"]:
            title = f"{name}: {about[name]}" if about.get(name) else name
            plots[f"hist:{name}"] = _histogram(plt, name, details["histograms"][name], plots_dir, title)
            charts.append({"feature": name, "key": f"hist:{name}", "description": about.get(name, "")})
    counts = {s: sum(e["status"] == s for e in features) for s in ("alert", "warn", "ok", "skipped")}
    title, css = _decision(decision)
    unseen = [e for e in features if (e.get("unseen") or 0) > 0]
    nulls = [e for e in features if (e.get("nulls") or 0) > 0 or (e.get("reference_nulls") or 0) > 0]
    context = {
        "use_case": spec.name, "as_of": details["as_of"], "version": details["model_version"],
        "rows": details["rows"], "reference_rows": details["reference_rows"],
        "decision": decision.model_dump(mode="json"), "decision_title": title, "decision_class": css,
        "score_psi": score_psi, "score_status": figures.get("score_psi", {}).get("status", "skipped"),
        "mean_score": figures.get("mean_score", {}).get("value"), "alert_rate": figures.get("alert_rate"),
        "alert_budget": spec.training.alert_budget,
        "limits": limits, "counts": counts, "feature_count": len(features),
        "unseen": unseen, "nulls": nulls, "not_in_reference": figures.get("features_not_in_reference"),
        "performance": performance.roles,
        "performance_date": performance.scored_on.isoformat() if performance.scored_on else None,
        "since_drift": performance.since_drift,
        "drift_since": performance.drift_since.isoformat() if performance.drift_since else None,
        "test_metrics": {**details["test_metrics"]}, "horizon": spec.horizon_days,
        "features": features, "charts": charts, "history_days": 0 if past is None else past.as_of_date.nunique(),
        "computed_ranks": sum(row.get("source") == "sample" for row in details.get("importance", [])),
    }
    return render_page("drift_report.html.j2", context, plots, out)
