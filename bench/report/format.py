"""Number formatting for the report: fixed formats, so the same results give the same bytes.

A missing number is always ``MISSING_TEXT`` (—), never 0.
"""

from __future__ import annotations

import math

from bench.report.aggregate import Value

MISSING_TEXT = "—"
NOT_SIGNIFICANT = "n.s."  # a difference whose confidence interval includes 0


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return MISSING_TEXT
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.0"


def fmt_diff(x: float | None, digits: int = 1) -> str:
    if x is None:
        return MISSING_TEXT
    text = f"{x:+.{digits}f}"
    return text[1:] if float(text) == 0 else text  # "0.0", not "+0.0" / "-0.0"


def fmt_paper(x: float | None) -> str:
    """Paper numbers as printed (one decimal; two where the paper has two, e.g. 20.47)."""
    if x is None:
        return MISSING_TEXT
    return f"{x:.1f}" if abs(round(x, 1) - x) < 1e-9 else f"{x:.2f}"


def fmt_value(v: Value, digits: int = 1, mean_format=None) -> str:
    """mean ± std over seeds; a single seed shows the mean alone, unequal seeds "± n/a".
    ``mean_format`` formats the mean (default ``fmt``)."""
    mean_format = mean_format or fmt
    if v.mean is None:
        return MISSING_TEXT
    if v.std is None and v.n_seeds_max <= 1:
        return mean_format(v.mean, digits)
    return f"{mean_format(v.mean, digits)} ± {fmt(v.std, digits) if v.std is not None else 'n/a'}"


def fmt_diff_value(v: Value, digits: int = 1) -> str:
    """A difference over seeds: signed mean ± std, as fmt_value shows a mean."""
    return fmt_value(v, digits, fmt_diff)


def fmt_interval(low: float | None, high: float | None, digits: int = 1) -> str:
    if low is None or high is None:
        return MISSING_TEXT
    return f"[{fmt_diff(low, digits)}, {fmt_diff(high, digits)}]"


def fmt_int(x: int | None) -> str:
    return MISSING_TEXT if x is None else f"{x:,}"


def fmt_count(x: int | None) -> str:
    """Parameter counts as the paper prints them: 8.25M (truncated to two decimals)."""
    if x is None:
        return MISSING_TEXT
    return f"{math.floor(x / 1e4) / 100:.2f}M"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return MISSING_TEXT
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def fmt_bytes(b: int | None) -> str:
    if b is None:
        return MISSING_TEXT
    if b >= 2**30:
        return f"{b / 2**30:.2f} GiB"
    return f"{b / 2**20:.1f} MiB"


def fmt_rate(x: float | None) -> str:
    return MISSING_TEXT if x is None else f"{x:,.0f}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


__all__ = ["MISSING_TEXT", "NOT_SIGNIFICANT", "fmt", "fmt_bytes", "fmt_count", "fmt_diff", "fmt_diff_value", "fmt_int", "fmt_interval",
           "fmt_paper", "fmt_rate", "fmt_seconds", "fmt_value", "plural"]
