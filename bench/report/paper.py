"""The paper's numbers (Pfeiffer et al., 2020) as data shipped with the project.

``paper_tables.json`` beside this file is a copy of the project's paper reference, less its
language table, which lives once, in ``madx.data.languages`` (order, Table 1, the seen split); its
``missing`` reasons are worded for the report's readers. Nothing here reads anything outside the
package at run time.

A missing paper number is ``None`` with a reason (:func:`missing_reason`), never 0: Table 2's
XLM-R MLM-SRC row is not in the project's copy of the paper, Table 3 has no MLM baselines, Table 4
only the adapter variants.

All paper numbers are for XLM-R *base* with language adapters / MLM trained on Wikipedia
(250k steps), NER averaged over 5 seeds (MLM-TRG: 1 run), QA over 3 seeds.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any

from madx.data.languages import NER_LANGUAGES, split_seen_unseen
from madx.variants import PAPER_ROW_ORDER, VARIANTS

# The paper's row order (Tables 2 and 5), used to sort methods everywhere in the report.
METHOD_ORDER: tuple[str, ...] = PAPER_ROW_ORDER
# Our method names -> the row keys of the paper tables in paper_tables.json: the variants' paper
# names, whose en dashes ("MAD-X –INV") the transcribed tables spell as hyphens ("MAD-X -INV").
PAPER_ROW_KEYS: dict[str, str] = {name: VARIANTS[name].paper_name.replace("–", "-") for name in METHOD_ORDER}

# Table id -> key in paper_tables.json.
TABLE_KEYS: dict[str, str] = {
    "table2": "table2_ner_f1_avg_over_16_sources",
    "table3": "table3_xquad_f1_em_from_en",
    "table4": "table4_added_params_xlmr_base",
    "table5": "table5_ner_f1_zero_shot_from_en",
}

# The base model every paper number is for (Table 4's "XLM-R Base (270M)").
PAPER_BASE_MODEL = "xlm-roberta-base"
# The paper's figures of differences (MAD-X minus a baseline, per source and target): baseline, figure.
DIFF_FIGURES: tuple[tuple[str, str], ...] = (("full-ft", "Figure 3"), ("mlm-trg", "Figure 4"), ("madx-inv", "Figure 5"))
UNSEEN_MARK = "†"  # after a language unseen by XLM-R, wherever a language is shown

PAPER_SETTING = (
    "Paper numbers are XLM-R base (270M parameters) with language adapters and MLM trained on Wikipedia "
    "(250k steps, batch 64); NER is WikiANN (Rahimi et al. splits), mean of 5 seeds (XLM-R MLM-TRG: 1 run); "
    "QA is trained on SQuAD v1.1 and evaluated on XQuAD, mean of 3 seeds."
)


@lru_cache(maxsize=1)
def paper_tables() -> dict[str, Any]:
    """The whole transcription (cached; treat as read-only)."""
    text = resources.files("bench.report").joinpath("paper_tables.json").read_text(encoding="utf-8")
    return json.loads(text)


def method_display_name(method: str) -> str:
    """The paper's name for one of our methods ("madx-inv" -> "MAD-X –INV"); unknown methods as given."""
    try:
        from madx.variants import VARIANTS
    except ImportError:  # pragma: no cover - madx is a hard dependency of bench
        VARIANTS = {}
    if method in VARIANTS:
        return VARIANTS[method].paper_name
    return method


def method_sort_key(method: str) -> tuple[int, str]:
    """Paper order first, then unknown methods alphabetically."""
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def _table(table: str) -> dict[str, Any]:
    try:
        return paper_tables()[TABLE_KEYS[table]]
    except KeyError:
        raise KeyError(f"unknown paper table {table!r}; known: {', '.join(TABLE_KEYS)}") from None


def columns(table: str) -> tuple[str, ...]:
    """Column (target language) order of a paper table, without 'avg'."""
    return tuple(c for c in _table(table)["columns"] if c != "avg")


def missing_reason(table: str, method: str) -> str | None:
    """Why the paper has no row for ``method`` in ``table`` (None if it has one)."""
    data = _table(table)
    key = PAPER_ROW_KEYS.get(method)
    if key is None:
        return f"not in the paper (unknown method {method!r})"
    rows = data["rows"]
    if key in rows:
        return None
    if key in data.get("missing", {}):
        return f"not available ({data['missing'][key]})"
    return "not available (the paper reports no such row)"


def value(table: str, method: str, column: str, metric: str = "f1") -> float | None:
    """One paper number: ``value("table2", "madx", "qu")`` -> 32.6; ``column="avg"`` for the paper's average.

    Table 3 cells are [F1, EM]: pick with ``metric`` ("f1" or "exact_match"). None when the paper has
    no such number (see :func:`missing_reason`).
    """
    if table == "table4":
        raise ValueError("table4 has no per-language columns; use added_parameters()")
    data = _table(table)
    key = PAPER_ROW_KEYS.get(method)
    row = data["rows"].get(key) if key else None
    if row is None or column not in data["columns"]:
        return None
    cell = row[data["columns"].index(column)]
    if table == "table3":
        if metric not in ("f1", "exact_match"):
            raise ValueError(f"table3 metric must be 'f1' or 'exact_match', got {metric!r}")
        cell = cell[0 if metric == "f1" else 1]
    elif metric != "f1":
        raise ValueError(f"{table} reports F1 only, got metric {metric!r}")
    return float(cell)


def subset_mean(table: str, method: str, cols: list[str] | tuple[str, ...], metric: str = "f1") -> float | None:
    """The paper row's mean over ``cols`` (to compare with our average over the same columns).

    None if the row or any of the columns is missing in the paper.
    """
    if not cols:
        return None
    values = [value(table, method, c, metric) for c in cols]
    if any(v is None for v in values):
        return None
    return math.fsum(values) / len(values)


def parse_count(text: str) -> int:
    """"8.25M" -> 8_250_000, "270M" -> 270_000_000, "57k" -> 57_000."""
    scale = {"k": 1_000, "M": 1_000_000, "B": 1_000_000_000}
    if text and text[-1] in scale:
        return round(float(text[:-1]) * scale[text[-1]])
    return int(text)


def added_parameters(method: str) -> dict[str, Any] | None:
    """Table 4: {"params": "8.25M", "params_count": 8250000, "pct": 3.05} or None (baselines)."""
    data = _table("table4")
    key = PAPER_ROW_KEYS.get(method)
    row = data["rows"].get(key) if key else None
    if row is None:
        return None
    return {"params": row["params"], "params_count": parse_count(row["params"]), "pct": float(row["pct"])}


def paper_base_parameters() -> int:
    return parse_count(_table("table4")["base_params"])


def seen_split() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(seen, unseen) NER languages: Table 2's dashed line (jv seen; see ``table2_seen_split.why``)."""
    return split_seen_unseen(NER_LANGUAGES, by="table2")


# For the report's readers (``madx.data.languages.TABLE2_SEEN_SPLIT_NOTE`` says why, for the code's readers).
SEEN_SPLIT_NOTE = ("the side of the paper's Table 2 dashed line: languages seen in XLM-R's multilingual pretraining "
                   "(left) or unseen (right, marked †).")


def seen_split_note() -> str:
    return SEEN_SPLIT_NOTE


def is_paper_base_model(name: str | None) -> bool:
    """Is the run's base model the paper's (XLM-R base)? A hub name, ``org/xlm-roberta-base`` or a local
    directory of that name; a tiny random model, another model or no name at all is not."""
    if not name:
        return False
    return name.rstrip("/").rsplit("/", 1)[-1].lower() == PAPER_BASE_MODEL


def is_unseen(code: str) -> bool:
    """A language unseen by XLM-R, as Table 2's dashed line splits them (jv seen); unknown codes: not marked."""
    try:
        _, unseen = split_seen_unseen([code], by="table2")
    except KeyError:
        return False
    return bool(unseen)


def language_label(code: str) -> str:
    """A language as the report shows it everywhere: the code, with † when XLM-R has not seen it."""
    return f"{code}{UNSEEN_MARK}" if is_unseen(code) else code


def ner_language_order() -> tuple[str, ...]:
    return NER_LANGUAGES


def xquad_language_order() -> tuple[str, ...]:
    return columns("table3")


def hyperparameters() -> dict[str, Any]:
    return paper_tables()["hyperparameters_sec5_2"]


__all__ = [
    "DIFF_FIGURES",
    "METHOD_ORDER",
    "PAPER_BASE_MODEL",
    "PAPER_ROW_KEYS",
    "PAPER_SETTING",
    "added_parameters",
    "columns",
    "hyperparameters",
    "is_paper_base_model",
    "is_unseen",
    "language_label",
    "method_display_name",
    "method_sort_key",
    "missing_reason",
    "ner_language_order",
    "paper_base_parameters",
    "paper_tables",
    "seen_split",
    "seen_split_note",
    "subset_mean",
    "UNSEEN_MARK",
    "value",
    "xquad_language_order",
]
