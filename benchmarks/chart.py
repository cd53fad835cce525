"""Charts of the latest benchmark figures (benchmarks/results/*.json) for docs/benchmarks.md.

    .venv/bin/python benchmarks/chart.py      # writes docs/img/benchmarks.png, and docs/img/chain_*.png from chain.json

- benchmarks.png: feature job, publishing, scoring run (feature_job.json, scoring.json);
- chain_stages.png: wall time of each stage of the whole chain against the number of customers, log-log, with the
  single-machine references dashed (chain.json, written by benchmarks/chain.py);
- chain_ratios.png: each stage's time over its reference's, per size (log scale; below 1 = faster than the reference).
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "img" / "benchmarks.png"
CHAIN = REPO / "benchmarks" / "results" / "chain.json"
CHAIN_STAGES = REPO / "docs" / "img" / "chain_stages.png"
CHAIN_RATIOS = REPO / "docs" / "img" / "chain_ratios.png"


def main() -> None:
    summary_chart()
    if CHAIN.exists():
        chain_charts()
    print("reproduce: .venv/bin/python benchmarks/chart.py")


def summary_chart() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feature = json.loads((REPO / "benchmarks" / "results" / "feature_job.json").read_text())
    scoring = json.loads((REPO / "benchmarks" / "results" / "scoring.json").read_text())
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))

    ax = axes[0]
    bars = {"Spark, first run": feature["spark_first_s"], "Spark, warm": feature["spark_warm_s"],
            "DuckDB": feature["duckdb_s"]}
    ax.barh(list(bars), list(bars.values()), color=["#c9c9c9", "#e8743b", "#4c78a8"])
    ax.axvline(3 * feature["duckdb_s"], color="black", linestyle="--", linewidth=1)
    ax.text(3 * feature["duckdb_s"], 2.45, " goal: 3x DuckDB", fontsize=8, va="center")
    ax.set_title(f"Feature job, {sum(feature['events_read'].values()) / 1e6:.1f}M events (s)", fontsize=10)

    ax = axes[1]
    pub = scoring["publish"]
    bars = {"pandas to_sql": pub["to_sql"]["total_s"], "pipeline (COPY + swap)": pub["pipeline"]["total_s"]}
    ax.barh(list(bars), list(bars.values()), color=["#c9c9c9", "#e8743b"])
    ax.set_title(f"Publish {pub['rows'] / 1e6:.0f}M score rows to PostgreSQL (s): {pub['speedup']:.1f}x", fontsize=10)

    ax = axes[2]
    steps = scoring["scoring_run"]["steps_s"]
    left = 0.0
    colors = plt.cm.tab10.colors
    for i, (step, seconds) in enumerate(steps.items()):
        ax.barh([0], [seconds], left=left, height=0.5, color=colors[i % 10], label=f"{step} {seconds:.1f} s")
        left += seconds
    ax.axvline(120, color="black", linestyle="--", linewidth=1)
    ax.text(119, 0.3, "goal 120 s ", fontsize=8, ha="right")
    ax.set_xlim(0, 125)
    ax.set_ylim(-0.5, 1.6)
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="upper left", ncol=2, frameon=False)
    ax.set_title(f"Scoring run, {scoring['scoring_run']['rows'] / 1e6:.0f}M customers (s)", fontsize=10)
    for ax in axes:
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


# The whole chain (benchmarks/chain.py) -------------------------------------------------------------------------------

# (stage key in chain.json, label, colour); references: (derived key, label, colour of the stage, line style)
CHAIN_LINES = [
    ("features", "features, as a task", "#e8743b"),
    ("snapshots", "training snapshots (12)", "#f2b447"),
    ("training", "training", "#8c6bb1"),
    ("scoring", "scoring", "#4c78a8"),
    ("publish", "publish", "#54a24b"),
    ("monitoring", "monitoring", "#b279a2"),
]
CHAIN_DERIVED = [
    ("job_first_s", "feature job, first run", "#e8743b", "-."),
    ("duckdb_first_s", "DuckDB, first run (ref.)", "#e8743b", "--"),
    ("raw_predict_s", "raw booster (ref.)", "#4c78a8", "--"),
    ("adbc_s", "ADBC COPY (ref.)", "#54a24b", "--"),
    ("to_sql_s", "pandas to_sql (ref.)", "#54a24b", ":"),
    ("evidently_s", "Evidently (ref.)", "#b279a2", "--"),
]
CHAIN_RATIOS_SHOWN = [  # (derived key, label, goal or None)
    ("ratio_job_first_duckdb", "feature job,\nfirst run / DuckDB", 3.0),
    ("ratio_job_warm_duckdb", "feature job,\nwarm / DuckDB", 2.0),
    ("ratio_feature_task_duckdb", "feature task\n(checks, session,\npublish) / DuckDB", None),
    ("ratio_scoring_raw_predict", "scoring /\nraw booster", None),
    ("ratio_publish_adbc", "publish /\nADBC COPY", None),
    ("ratio_publish_to_sql", "publish /\npandas to_sql", None),
    ("ratio_monitoring_evidently", "monitoring /\nEvidently", 1 / 20),
]


def chain_charts(path: Path = CHAIN) -> None:
    """Time per stage against size (log-log) and the ratios to the references, from chain.json."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(path.read_text())
    sizes = res["sizes"]
    x = [s["customers"] for s in sizes]
    marker = "o" if len(x) > 1 else "s"

    fig, ax = plt.subplots(figsize=(9, 5.2))
    for key, label, color in CHAIN_LINES:
        ax.plot(x, [s["stages"][key]["wall_s"] for s in sizes], marker=marker, color=color, label=label)
    for key, label, color, style in CHAIN_DERIVED:
        if all(key in s["derived"] for s in sizes):
            ax.plot(x, [s["derived"][key] for s in sizes], marker=".", color=color, linestyle=style, label=label)
    if len(x) > 1:  # a linear-scaling guide through the smallest size's feature task
        y0 = sizes[0]["stages"]["features"]["wall_s"]
        ax.plot([x[0], x[-1]], [y0, y0 * x[-1] / x[0]], color="grey", linewidth=0.8, linestyle=":",
                label="slope 1 (linear)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("customers (generator scale)")
    ax.set_ylabel("wall time (s)")
    ax.set_xticks(x, [f"{n:,}" for n in x])
    ax.minorticks_off()
    ax.grid(True, which="major", linewidth=0.3)
    slopes = res.get("slopes") or {}
    title = "Whole chain, churn: time per stage against size"
    if slopes:
        title += "\n(log-log slopes: " + ", ".join(f"{k.split(' ')[0]} {slopes[k]:.2f}" for k, _, _ in CHAIN_LINES
                                                  if k in slopes) + ")"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=2, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    CHAIN_STAGES.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(CHAIN_STAGES, dpi=110)
    plt.close(fig)

    shown = [(k, label, goal) for k, label, goal in CHAIN_RATIOS_SHOWN if any(k in s["derived"] for s in sizes)]
    fig, ax = plt.subplots(figsize=(10, 4.6))
    width = 0.8 / len(sizes)
    colors = plt.cm.Blues([0.45 + 0.5 * i / max(len(sizes) - 1, 1) for i in range(len(sizes))])
    for i, s in enumerate(sizes):
        values = [s["derived"].get(k) or float("nan") for k, _, _ in shown]
        pos = [j + (i - (len(sizes) - 1) / 2) * width for j in range(len(shown))]
        ax.bar(pos, values, width=width * 0.95, color=colors[i], label=f"{s['customers']:,} customers")
        for p_, v in zip(pos, values, strict=True):
            if v == v:  # not NaN
                ax.text(p_, v * 1.08, f"{v:.2g}", ha="center", va="bottom", fontsize=6)
    for j, (_, _, goal) in enumerate(shown):
        if goal is not None:
            ax.plot([j - 0.45, j + 0.45], [goal, goal], color="black", linestyle="--", linewidth=1)
            ax.text(j + 0.46, goal, "goal", fontsize=6, va="center")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(shown)), [label for _, label, _ in shown], fontsize=7)
    ax.set_ylabel("ours / reference (time)")
    ax.set_title("Each stage against its single-machine reference, same run (below 1: faster than the reference)",
                 fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(CHAIN_RATIOS, dpi=110)
    plt.close(fig)
    print(f"wrote {CHAIN_STAGES}\nwrote {CHAIN_RATIOS}")


if __name__ == "__main__":
    main()
