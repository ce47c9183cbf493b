"""ROC and CMC figures for benchmark results (PNG, matplotlib's Agg backend).

matplotlib is imported lazily, inside the functions, and only its object-oriented API
is used (``Figure`` + ``FigureCanvasAgg``): no global pyplot state, no display needed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrface.io.fileio import atomic_write

Curve = tuple[str, Sequence[float], Sequence[float]]


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def _save(fig: Any, ax: Any, path: str | Path) -> Path:
    if ax.lines:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    return path


def plot_roc(curves: Sequence[Curve], path: str | Path, title: str = "ROC") -> Path:
    """Write a ROC figure: TAR vs FAR (log axis), one line per ``(label, far, tar)``."""
    fig, ax = _figure(title, "false accept rate (FAR)", "true accept rate (TAR)")
    lo = 1.0
    for label, far_seq, tar_seq in curves:
        far, tar = np.asarray(far_seq, float), np.asarray(tar_seq, float)
        keep = far > 0
        if keep.any():
            ax.plot(far[keep], tar[keep], label=label)
            lo = min(lo, float(far[keep].min()))
    ax.set_xscale("log")
    ax.set_xlim(lo, 1.0)
    ax.set_ylim(0.0, 1.01)
    return _save(fig, ax, path)


def plot_cmc(curves: Sequence[Curve], path: str | Path, title: str = "CMC") -> Path:
    """Write a CMC figure: identification rate vs rank, one line per ``(label, ranks, rates)``."""
    fig, ax = _figure(title, "rank", "identification rate")
    for label, ranks, rates in curves:
        ax.plot(np.asarray(ranks), np.asarray(rates, float), marker=".", label=label)
    ax.set_ylim(0.0, 1.01)
    return _save(fig, ax, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "all"


def plot_results(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """One figure per ``plot_group`` of ``result["results"]``: ROC for verification entries
    (``metrics.roc``), CMC for identification entries (``metrics.cmc_full``).

    Returns the written paths (``roc_<group>.png`` / ``cmc_<group>.png`` in ``out_dir``).
    """
    groups: dict[tuple[str, str], list[Curve]] = {}
    for e in result.get("results", []):
        group = e.get("plot_group")
        if group is None:
            continue
        m = e["metrics"]
        if e["kind"] == "verification" and "roc" in m:
            curve = (e["plot_label"], m["roc"]["far"], m["roc"]["tar"])
        elif e["kind"] == "identification" and m.get("cmc_full"):
            n = len(m["cmc_full"])
            curve = (e["plot_label"], list(range(1, n + 1)), m["cmc_full"])
        else:
            continue
        groups.setdefault((e["kind"], group), []).append(curve)
    out = Path(out_dir)
    name = result.get("protocol", "").upper()
    paths = []
    for (kind, group), curves in groups.items():
        if kind == "verification":
            paths.append(plot_roc(curves, out / f"roc_{_slug(group)}.png", f"{name} ROC, {group}"))
        else:
            paths.append(plot_cmc(curves, out / f"cmc_{_slug(group)}.png", f"{name} CMC, {group}"))
    return paths
