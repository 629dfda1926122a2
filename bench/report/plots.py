"""Heatmaps of NER transfer (matplotlib, Agg): the paper's Figures 7–12 and 3–5.

* :func:`f1_heatmap`: one method's mean F1 for every source (rows) × target (columns) pair.
* :func:`diff_heatmap`: MAD-X minus a baseline, in F1 points, per pair. The paper calls this
  "relative F1 improvement"; its numbers are differences in points (Figure 4's en→ja 9.7 is Table 5's
  MAD-X 19.0 minus MLM-TRG 9.3), so that is what is plotted. Diverging colormap centred on 0.

Missing pairs are NaN in the returned arrays and drawn hatched and blank, never as 0. Every function
returns a :class:`Heatmap` with the array it plotted, so tests can check the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # noqa: E402 - before pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from bench.report import paper  # noqa: E402
from bench.report.aggregate import EvalCells  # noqa: E402

# Figures 3–5: MAD-X against these baselines.
DIFF_BASELINES: tuple[tuple[str, str], ...] = (
    ("full-ft", "Figure 3"),
    ("mlm-trg", "Figure 4"),
    ("madx-inv", "Figure 5"),
)
# Figures 7–12: per-method F1 heatmaps.
F1_FIGURES: dict[str, str] = {
    "full-ft": "Figure 7", "mlm-src": "Figure 8", "mlm-trg": "Figure 9",
    "madx-lad-inv": "Figure 10", "madx-inv": "Figure 11", "madx": "Figure 12",
}


@dataclass(frozen=True)
class Heatmap:
    kind: str  # "f1" or "diff"
    method: str
    baseline: str | None  # diff heatmaps: the method subtracted
    title: str
    paper_figure: str | None
    sources: tuple[str, ...]  # rows
    targets: tuple[str, ...]  # columns
    array: np.ndarray  # (len(sources), len(targets)); NaN = missing
    path: Path | None  # the PNG written (None if not drawn)

    @property
    def filename(self) -> str:
        return self.path.name if self.path else ""

    @property
    def n_cells(self) -> int:
        return int(np.isfinite(self.array).sum())


def ner_axes(cells: EvalCells) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Sources and targets present for NER (any method), in the paper's language order."""
    order = paper.ner_language_order()

    def ordered(codes: set[str]) -> tuple[str, ...]:
        return tuple([c for c in order if c in codes] + sorted(codes - set(order)))

    return ordered(cells.sources("ner")), ordered(cells.targets("ner"))


def f1_matrix(cells: EvalCells, method: str, sources: Sequence[str], targets: Sequence[str]) -> np.ndarray:
    array = np.full((len(sources), len(targets)), np.nan)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            value = cells.get("ner", method, s, t)
            if value.mean is not None:
                array[i, j] = value.mean
    return array


def _text_colour(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def _seen_boundary(codes: Sequence[str]) -> float | None:
    """Position of Table 2's dashed line between the last seen and the first unseen language (if both present)."""
    seen, _ = paper.seen_split()
    flags = [c in seen for c in codes]
    for k in range(1, len(flags)):
        if flags[k - 1] and not flags[k] and all(flags[:k]) and not any(flags[k:]):
            return k - 0.5
    return None


def draw_heatmap(
    array: np.ndarray, sources: Sequence[str], targets: Sequence[str], *, title: str, colorbar_label: str,
    norm: Normalize, cmap: str, fmt: str, path: Path,
) -> None:
    n_rows, n_cols = array.shape
    width = max(5.6, 0.56 * n_cols + 2.8)
    height = max(3.8, 0.46 * n_rows + 2.2)
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(array), cmap=colormap, norm=norm, aspect="auto", interpolation="nearest")
    font = 8 if n_cols <= 10 else 7
    for i in range(n_rows):
        for j in range(n_cols):
            value = array[i, j]
            if math.isnan(value):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#b0b0b0",
                                       linewidth=0))
            else:
                text = format(value, fmt)
                if float(text) == 0:  # no "+0.0" / "-0.0"
                    text = format(0.0, fmt.lstrip("+"))
                ax.text(j, i, text, ha="center", va="center", fontsize=font,
                        color=_text_colour(colormap(norm(value))))
    ax.set_xticks(range(n_cols), labels=list(targets))
    ax.set_yticks(range(n_rows), labels=list(sources))
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("target language", fontsize=9)
    ax.set_ylabel("source language", fontsize=9)
    ax.tick_params(length=0, labelsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
    # thin white grid between cells, and Table 2's seen | unseen line
    ax.set_xticks(np.arange(-0.5, n_cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    # a black dashed line on a white one: visible on dark and light cells alike
    boundary = _seen_boundary(targets)
    if boundary is not None:
        ax.axvline(boundary, color="white", linewidth=2.6, zorder=4)
        ax.axvline(boundary, color="#111111", linestyle=(0, (4, 2)), linewidth=1.4, zorder=5)
    boundary = _seen_boundary(sources)
    if boundary is not None:
        ax.axhline(boundary, color="white", linewidth=2.6, zorder=4)
        ax.axhline(boundary, color="#111111", linestyle=(0, (4, 2)), linewidth=1.4, zorder=5)
    ax.set_title(title, fontsize=10, pad=10, wrap=True)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(colorbar_label, fontsize=9)
    bar.ax.tick_params(labelsize=8)
    if np.isnan(array).any():
        handles = [Patch(facecolor="white", edgecolor="#b0b0b0", hatch="///", label="no result")]
        ax.legend(handles=handles, loc="upper right", bbox_to_anchor=(1.0, -0.01), fontsize=8, frameon=False,
                  handlelength=1.6, borderaxespad=0.2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # metadata: no "Software" string with a version, so equal data gives equal bytes across installs
    fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


def f1_heatmap(cells: EvalCells, method: str, sources: Sequence[str], targets: Sequence[str], out_dir: Path | None,
               vmax: float | None = None) -> Heatmap:
    array = f1_matrix(cells, method, sources, targets)
    name = paper.method_display_name(method)
    figure = F1_FIGURES.get(method)
    title = f"{name}: NER F1, mean over seeds" + (f"\n(the paper's {figure})" if figure else "")
    path = None
    if out_dir is not None and np.isfinite(array).any():
        top = vmax if vmax is not None else float(np.nanmax(array))
        norm = Normalize(vmin=0.0, vmax=max(top, 1.0))
        path = Path(out_dir) / f"ner-f1-{method}.png"
        draw_heatmap(array, sources, targets, title=title, colorbar_label="F1 (%)", norm=norm, cmap="viridis",
                     fmt=".1f", path=path)
    return Heatmap("f1", method, None, title, figure, tuple(sources), tuple(targets), array, path)


def diff_heatmap(cells: EvalCells, method: str, baseline: str, sources: Sequence[str], targets: Sequence[str],
                 out_dir: Path | None, figure: str | None = None) -> Heatmap:
    array = f1_matrix(cells, method, sources, targets) - f1_matrix(cells, baseline, sources, targets)
    title = (f"{paper.method_display_name(method)} minus {paper.method_display_name(baseline)}: NER F1 points"
             + (f"\n(the paper's {figure})" if figure else ""))
    path = None
    if out_dir is not None and np.isfinite(array).any():
        limit = float(np.nanmax(np.abs(array)))
        limit = limit if limit > 0 else 1.0
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
        path = Path(out_dir) / f"ner-diff-{method}-vs-{baseline}.png"
        draw_heatmap(array, sources, targets, title=title,
                     colorbar_label=f"F1 points (> 0: {paper.method_display_name(method)} better)",
                     norm=norm, cmap="RdBu", fmt="+.1f", path=path)
    return Heatmap("diff", method, baseline, title, figure, tuple(sources), tuple(targets), array, path)


def ner_heatmaps(cells: EvalCells, out_dir: Path | None) -> list[Heatmap]:
    """Every heatmap the NER results allow: F1 per method, then MAD-X against each baseline present.

    All F1 heatmaps share one colour scale (0 to the highest F1 of any method) so they can be compared.
    """
    sources, targets = ner_axes(cells)
    if not sources or not targets:
        return []
    methods = sorted(cells.methods("ner"), key=paper.method_sort_key)
    vmax = max(v.mean for v in cells.cells.values() if v.mean is not None)
    maps = [f1_heatmap(cells, m, sources, targets, out_dir, vmax=vmax) for m in methods]
    if "madx" in methods:
        for baseline, figure in DIFF_BASELINES:
            if baseline in methods:
                heatmap = diff_heatmap(cells, "madx", baseline, sources, targets, out_dir, figure)
                if heatmap.n_cells:
                    maps.append(heatmap)
    return maps


__all__ = ["DIFF_BASELINES", "F1_FIGURES", "Heatmap", "diff_heatmap", "f1_heatmap", "f1_matrix", "ner_axes",
           "ner_heatmaps"]
