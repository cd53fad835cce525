"""Pages and charts people look at (the model card, the drift report): matplotlib figures saved as PNG, and HTML
templates rendered into one self-contained page each (images inlined), which opens anywhere."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (workers have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


def _inline(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def fmt(value, digits: int = 4) -> str:
    """A number for a table cell: blank for missing, thousands separators, fixed decimals for floats."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:,.{digits}f}"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    return str(value)


def render_page(template: str, context: dict[str, Any], plots: dict[str, Path], out: Path) -> Path:
    """Render one of the package's HTML templates into a self-contained page (images inlined as data URIs)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("batchml", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = fmt
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f}%"
    images = {name: _inline(path) for name, path in plots.items()}
    html = env.get_template(template).render(**context, images=images)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    return out
