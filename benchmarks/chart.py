"""Chart of the latest benchmark figures (benchmarks/results/*.json) for docs/benchmarks.md.

    .venv/bin/python benchmarks/chart.py      # writes docs/img/benchmarks.png
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "img" / "benchmarks.png"


def main() -> None:
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
    print(f"wrote {OUT}\nreproduce: .venv/bin/python benchmarks/chart.py")


if __name__ == "__main__":
    main()
