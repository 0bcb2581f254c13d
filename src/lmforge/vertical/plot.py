"""The plot of a vertical run: accuracy against labelled examples, few-shot accuracy against k."""

from __future__ import annotations

import io

from lmforge.checkpoint import atomic_write_bytes
from lmforge.vertical.config import VerticalResult

__all__ = ["plot_result"]


def plot_result(result: VerticalResult, path, n_all: int) -> None:
    """Accuracy against labelled examples per method, and few-shot accuracy against k, written
    to ``path`` as a PNG (``n_all``: how many examples "all" is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(2, 1))
    _plot_budgets(left, result, n_all)
    _plot_fewshot(right, result)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _plot_budgets(axes, result: VerticalResult, n_all: int) -> None:
    for method in dict.fromkeys(r["method"] for r in result.rows):
        rows = [r for r in result.rows if r["method"] == method]
        xs = [n_all if r["labels"] == "all" else r["labels"] for r in rows]
        spread = [r.get("accuracy_sd", 0.0) for r in rows]  # over label draws, if several
        axes.errorbar(
            xs, [r["accuracy"] for r in rows], yerr=spread, marker="o", capsize=3, label=method
        )
    axes.set_xscale("log")
    axes.set_xlabel(f"labelled examples (all = {n_all:,})")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"{result.task}: base {result.base}")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)


def _plot_fewshot(axes, result: VerticalResult) -> None:
    axes.set_title("few-shot prompting of the base")
    axes.grid(alpha=0.3)
    if not result.fewshot:
        axes.axis("off")
        axes.text(0.5, 0.5, "(not run)", ha="center", va="center")
        return
    for scoring in dict.fromkeys(p["scoring"] for p in result.fewshot):
        points = [p for p in result.fewshot if p["scoring"] == scoring]
        axes.plot(
            [p["k"] for p in points], [p["accuracy"] for p in points], marker="o", label=scoring
        )
    axes.legend(fontsize=8)
    axes.set_xscale("symlog", linthresh=1)
    ks = sorted({p["k"] for p in result.fewshot})
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set_ylim(0, 1)
    axes.set_xlabel("demonstrations k")
    axes.set_ylabel("accuracy")
