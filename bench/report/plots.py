"""Heatmaps of cross-lingual transfer (matplotlib, Agg): the paper's Figures 7–12 and 3–5, and QA's.

* :func:`f1_heatmap`: one method's mean NER F1 for every source (rows) × target (columns) pair.
* :func:`diff_heatmap`: MAD-X minus a baseline, in F1 points, per pair. The paper calls this
  "relative F1 improvement"; its numbers are differences in points (Figure 4's en→ja 9.7 is Table 5's
  MAD-X 19.0 minus MLM-TRG 9.3), so that is what is plotted. Diverging colormap centred on 0. A cell
  whose paired-bootstrap interval includes 0 (``comparisons.py``) is dotted and marked "n.s.".
* :func:`qa_heatmaps`: XQuAD from English: F1 and EM per method (rows) × target (columns), and MAD-X
  minus each other method, marked the same way.

Languages unseen by XLM-R carry † (``paper.language_label``), as everywhere in the report, and a
dashed line separates seen from unseen where both are present. Missing pairs are NaN in the returned
arrays and drawn hatched and blank, never as 0. Every function returns a :class:`Heatmap` with the
array it plotted (and, for differences, which cells are significant), so tests can check the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
from bench.report.comparisons import REFERENCE_METHOD, Comparison, PairKey  # noqa: E402
from bench.report.format import NOT_SIGNIFICANT  # noqa: E402

# Figures 3–5: MAD-X against these baselines.
DIFF_BASELINES: tuple[tuple[str, str], ...] = paper.DIFF_FIGURES
# Figures 7–12: per-method F1 heatmaps.
F1_FIGURES: dict[str, str] = {
    "full-ft": "Figure 7", "mlm-src": "Figure 8", "mlm-trg": "Figure 9",
    "madx-lad-inv": "Figure 10", "madx-inv": "Figure 11", "madx": "Figure 12",
}
QA_METRICS = {"f1": "F1", "exact_match": "EM"}


@dataclass(frozen=True)
class Heatmap:
    kind: str  # "f1" or "diff" (for QA's EM heatmaps too: the score, or a difference of it)
    method: str  # the method plotted (QA: "all", one row per method)
    baseline: str | None  # diff heatmaps: the method subtracted (QA: "all", one row per baseline)
    title: str
    paper_figure: str | None
    sources: tuple[str, ...]  # rows: source languages (QA: methods, or baselines)
    targets: tuple[str, ...]  # columns
    array: np.ndarray  # (len(sources), len(targets)); NaN = missing
    path: Path | None  # the PNG written (None if not drawn)
    task: str = "ner"
    metric: str = "f1"
    rows: str = "source language"  # what the rows are
    # diff heatmaps: 1 = the 95 % paired-bootstrap interval excludes 0, 0 = it includes 0 (marked "n.s."),
    # NaN = no interval (no cell, or no per-example predictions); None for score heatmaps
    significant: np.ndarray | None = None

    @property
    def filename(self) -> str:
        return self.path.name if self.path else ""

    @property
    def n_cells(self) -> int:
        return int(np.isfinite(self.array).sum())

    @property
    def n_tested(self) -> int:
        return 0 if self.significant is None else int(np.isfinite(self.significant).sum())


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
    flags = [not paper.is_unseen(c) for c in codes]
    for k in range(1, len(flags)):
        if flags[k - 1] and not flags[k] and all(flags[:k]) and not any(flags[k:]):
            return k - 0.5
    return None


def _labels(codes: Sequence[str], languages: bool) -> list[str]:
    return [paper.language_label(c) for c in codes] if languages else [paper.method_display_name(c) for c in codes]


def draw_heatmap(
    array: np.ndarray, sources: Sequence[str], targets: Sequence[str], *, title: str, colorbar_label: str,
    norm: Normalize, cmap: str, fmt: str, path: Path, significant: np.ndarray | None = None,
    rows: str = "source language",
) -> None:
    """``significant``: per cell 1 / 0 / NaN (see Heatmap); cells with 0 are dotted and marked n.s."""
    n_rows, n_cols = array.shape
    row_languages = rows.endswith("language")
    width = max(5.6, 0.56 * n_cols + 2.8 + (1.2 if not row_languages else 0.0))
    height = max(3.8, 0.46 * n_rows + 2.2)
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(array), cmap=colormap, norm=norm, aspect="auto", interpolation="nearest")
    font = 8 if n_cols <= 10 else 7
    tested = significant is not None and bool(np.isfinite(significant[np.isfinite(array)]).any())
    marked = untested = False
    for i in range(n_rows):
        for j in range(n_cols):
            value = array[i, j]
            if math.isnan(value):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#b0b0b0",
                                       linewidth=0))
                continue
            text = format(value, fmt)
            if float(text) == 0:  # no "+0.0" / "-0.0"
                text = format(0.0, fmt.lstrip("+"))
            colour = _text_colour(colormap(norm(value)))
            mark = None
            if tested and significant[i, j] == 0:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="....", edgecolor=colour,
                                       linewidth=0, alpha=0.35))
                mark, marked = NOT_SIGNIFICANT, True
            elif tested and math.isnan(significant[i, j]):
                mark, untested = "no test", True
            ax.text(j, i - (0.13 if mark else 0), text, ha="center", va="center", fontsize=font, color=colour)
            if mark:
                ax.text(j, i + 0.24, mark, ha="center", va="center", fontsize=font - 2, color=colour)
    ax.set_xticks(range(n_cols), labels=_labels(targets, True))
    ax.set_yticks(range(n_rows), labels=_labels(sources, row_languages))
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("target language (†: unseen by XLM-R)" if any(paper.is_unseen(t) for t in targets) else "target language",
                  fontsize=9)
    ax.set_ylabel(rows, fontsize=9)
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
    boundary = _seen_boundary(sources) if row_languages else None
    if boundary is not None:
        ax.axhline(boundary, color="white", linewidth=2.6, zorder=4)
        ax.axhline(boundary, color="#111111", linestyle=(0, (4, 2)), linewidth=1.4, zorder=5)
    if significant is not None and not tested:
        title += "\n(significance not available: no per-example predictions)"
    ax.set_title(title, fontsize=10, pad=10)  # lines broken by hand: wrap=True upsets tight_layout
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(colorbar_label, fontsize=9)
    bar.ax.tick_params(labelsize=8)
    handles = []
    if np.isnan(array).any():
        handles.append(Patch(facecolor="white", edgecolor="#b0b0b0", hatch="///", label="no result"))
    if marked:
        handles.append(Patch(facecolor="white", edgecolor="#808080", hatch="....",
                             label=f"{NOT_SIGNIFICANT}: 95 % interval includes 0"))
    if untested:
        handles.append(Patch(facecolor="white", edgecolor="white", label="no test: no usable per-example predictions"))
    legend_rows = math.ceil(len(handles) / 2)
    if handles:  # under the plot, in the figure's own margin
        fig.legend(handles=handles, loc="lower center", fontsize=8, frameon=False, handlelength=1.6,
                   ncol=min(len(handles), 2), borderaxespad=0.3)
    fig.tight_layout(rect=(0, 0.055 * legend_rows * 3.8 / height, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # metadata: no "Software" string with a version, so equal data gives equal bytes across installs
    fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


def _significance(pairs: Mapping[PairKey, Comparison] | None, keys: Sequence[Sequence[PairKey | None]]) -> np.ndarray:
    out = np.full((len(keys), len(keys[0]) if keys else 0), np.nan)
    for i, row in enumerate(keys):
        for j, key in enumerate(row):
            comparison = (pairs or {}).get(key) if key is not None else None
            if comparison is not None and comparison.significant is not None:
                out[i, j] = 1.0 if comparison.significant else 0.0
    return out


def _score_norm(array: np.ndarray, vmax: float | None) -> Normalize:
    top = vmax if vmax is not None else float(np.nanmax(array))
    return Normalize(vmin=0.0, vmax=max(top, 1.0))


def _diff_norm(array: np.ndarray) -> TwoSlopeNorm:
    limit = float(np.nanmax(np.abs(array)))
    limit = limit if limit > 0 else 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def f1_heatmap(cells: EvalCells, method: str, sources: Sequence[str], targets: Sequence[str], out_dir: Path | None,
               vmax: float | None = None) -> Heatmap:
    array = f1_matrix(cells, method, sources, targets)
    name = paper.method_display_name(method)
    figure = F1_FIGURES.get(method)
    title = f"{name}: NER F1, mean over seeds" + (f"\n(the paper's {figure})" if figure else "")
    path = None
    if out_dir is not None and np.isfinite(array).any():
        path = Path(out_dir) / f"ner-f1-{method}.png"
        draw_heatmap(array, sources, targets, title=title, colorbar_label="F1 (%)", norm=_score_norm(array, vmax),
                     cmap="viridis", fmt=".1f", path=path)
    return Heatmap("f1", method, None, title, figure, tuple(sources), tuple(targets), array, path)


def diff_heatmap(cells: EvalCells, method: str, baseline: str, sources: Sequence[str], targets: Sequence[str],
                 out_dir: Path | None, figure: str | None = None,
                 pairs: Mapping[PairKey, Comparison] | None = None) -> Heatmap:
    array = f1_matrix(cells, method, sources, targets) - f1_matrix(cells, baseline, sources, targets)
    significant = _significance(pairs, [[("ner", "f1", baseline, s, t) if method == REFERENCE_METHOD else None
                                         for t in targets] for s in sources])
    title = (f"{paper.method_display_name(method)} minus {paper.method_display_name(baseline)}: NER F1 points"
             + (f"\n(the paper's {figure})" if figure else ""))
    path = None
    if out_dir is not None and np.isfinite(array).any():
        path = Path(out_dir) / f"ner-diff-{method}-vs-{baseline}.png"
        draw_heatmap(array, sources, targets, title=title,
                     colorbar_label=f"F1 points\n(> 0: {paper.method_display_name(method)} better)",
                     norm=_diff_norm(array), cmap="RdBu", fmt="+.1f", path=path, significant=significant)
    return Heatmap("diff", method, baseline, title, figure, tuple(sources), tuple(targets), array, path,
                   significant=significant)


def ner_heatmaps(cells: EvalCells, out_dir: Path | None, pairs: Mapping[PairKey, Comparison] | None = None) -> list[Heatmap]:
    """Every heatmap the NER results allow: F1 per method, then MAD-X against each baseline present.

    All F1 heatmaps share one colour scale (0 to the highest F1 of any method) so they can be compared.
    """
    sources, targets = ner_axes(cells)
    if not sources or not targets:
        return []
    methods = sorted(cells.methods("ner"), key=paper.method_sort_key)
    vmax = max(v.mean for v in cells.cells.values() if v.mean is not None)
    maps = [f1_heatmap(cells, m, sources, targets, out_dir, vmax=vmax) for m in methods]
    if REFERENCE_METHOD in methods:
        for baseline, figure in DIFF_BASELINES:
            if baseline in methods:
                heatmap = diff_heatmap(cells, REFERENCE_METHOD, baseline, sources, targets, out_dir, figure, pairs)
                if heatmap.n_cells:
                    maps.append(heatmap)
    return maps


def qa_matrix(cells: EvalCells, methods: Sequence[str], targets: Sequence[str], source: str = "en") -> np.ndarray:
    array = np.full((len(methods), len(targets)), np.nan)
    for i, m in enumerate(methods):
        for j, t in enumerate(targets):
            value = cells.get("qa", m, source, t)
            if value.mean is not None:
                array[i, j] = value.mean
    return array


def qa_heatmaps(metrics: Mapping[str, EvalCells], out_dir: Path | None,
                pairs: Mapping[PairKey, Comparison] | None = None) -> list[Heatmap]:
    """XQuAD from English (Table 3's setting), per metric: the score per method × target, then MAD-X
    minus every other method × target. Score heatmaps share one colour scale (0 to the highest F1)."""
    present = {metric: cells for metric, cells in metrics.items() if cells.targets("qa", source="en")}
    if not present:
        return []
    order = paper.xquad_language_order()
    codes = set().union(*(cells.targets("qa", source="en") for cells in present.values()))
    targets = tuple([c for c in order if c in codes] + sorted(codes - set(order)))
    tops = [v.mean for cells in present.values() for k, v in cells.cells.items() if k[2] == "en" and v.mean is not None]
    vmax = max(tops)
    maps = []
    for metric, cells in present.items():
        label = QA_METRICS.get(metric, metric)
        methods = tuple(sorted({m for m in cells.methods("qa") if cells.targets("qa", m, "en")}, key=paper.method_sort_key))
        array = qa_matrix(cells, methods, targets)
        title = f"XQuAD {label} from English, mean over seeds\n(the paper's Table 3 setting)"
        path = None
        if out_dir is not None and np.isfinite(array).any():
            path = Path(out_dir) / f"qa-{'em' if metric == 'exact_match' else metric}.png"
            draw_heatmap(array, methods, targets, title=title, colorbar_label=f"{label} (%)",
                         norm=_score_norm(array, vmax), cmap="viridis", fmt=".1f", path=path, rows="method")
        maps.append(Heatmap("f1", "all", None, title, None, methods, targets, array, path, task="qa", metric=metric,
                            rows="method"))
        baselines = tuple(m for m in methods if m != REFERENCE_METHOD)
        if REFERENCE_METHOD not in methods or not baselines:
            continue
        reference = qa_matrix(cells, (REFERENCE_METHOD,), targets)
        diff = reference - qa_matrix(cells, baselines, targets)  # (baselines, targets)
        if not np.isfinite(diff).any():
            continue
        significant = _significance(pairs, [[("qa", metric, b, "en", t) for t in targets] for b in baselines])
        name = paper.method_display_name(REFERENCE_METHOD)
        title = f"{name} minus each baseline: XQuAD {label} points\nfrom English"
        path = None
        if out_dir is not None:
            path = Path(out_dir) / f"qa-diff-{'em' if metric == 'exact_match' else metric}.png"
            draw_heatmap(diff, baselines, targets, title=title, colorbar_label=f"{label} points\n(> 0: {name} better)",
                         norm=_diff_norm(diff), cmap="RdBu", fmt="+.1f", path=path, significant=significant,
                         rows="baseline")
        maps.append(Heatmap("diff", REFERENCE_METHOD, "all", title, None, baselines, targets, diff, path, task="qa",
                            metric=metric, rows="baseline", significant=significant))
    return maps


__all__ = ["DIFF_BASELINES", "F1_FIGURES", "Heatmap", "NOT_SIGNIFICANT", "diff_heatmap", "f1_heatmap", "f1_matrix",
           "ner_axes", "ner_heatmaps", "qa_heatmaps", "qa_matrix"]
