"""The one language table: every language the MAD-X experiments touch, with the facts reports need.

NER rows are transcribed from Table 1 of Pfeiffer et al. (2020) ("MAD-X: An Adapter-based Framework for
Multi-task Cross-lingual Transfer"), as recorded in the project's paper reference (`reference.json`,
"ner_languages"). This module is the copy the code uses; nothing reads the reference at run time.

Two notions of "seen" exist and are kept apart on purpose:

* `Language.seen_by_xlmr` is Table 1's "Covered by SOTA?" column exactly as transcribed. The text
  extraction of the paper lost some check marks: Javanese (jv) is recorded as *not* covered, even though
  Section 5 describes four low-resource *covered* languages and jv sits on the covered side of Table 2.
* `Language.table2_seen` is the side of Table 2's vertical dashed line ("seen in multilingual pretraining"):
  en ja zh ar jv sw is my seen, qu cdo ilo xmf mi mhr tk gn unseen. Use this one to reproduce the paper's
  seen/unseen averages.

`split_seen_unseen(codes, by=...)` makes the caller say which of the two it means.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Literal

NerCategory = Literal["high-resource", "low-resource seen", "low-resource unseen", "truly low-resource unseen"]
_NER_CATEGORIES = ("high-resource", "low-resource seen", "low-resource unseen", "truly low-resource unseen")


@dataclass(frozen=True)
class Language:
    """One language as the experiments see it.

    Attributes:
        code: ISO code used by the datasets (WikiANN / XQuAD), e.g. "en", "cdo".
        name: English name as printed in the paper.
        family: language family (Table 1 for NER languages).
        seen_by_xlmr: whether XLM-R's pretraining data covered the language. For NER languages this is
            Table 1's column as transcribed (jv: False, see the module docstring); for the XQuAD languages
            it is True for all (all 12 are among XLM-R's 100 CC-100 languages, Conneau et al., 2020).
        wiki_articles: Wikipedia size as printed in Table 1 ("6.0M", "57k"); None where the paper gives none.
        table2_seen: the side of Table 2's dashed line (True = seen half); None for non-NER languages.
        ner_category: which of the paper's four NER groups (Section 5) the language belongs to; None for
            non-NER languages.
    """

    code: str
    name: str
    family: str
    seen_by_xlmr: bool
    wiki_articles: str | None = None
    table2_seen: bool | None = None
    ner_category: NerCategory | None = None

    def __post_init__(self) -> None:
        if not self.code or self.code != self.code.strip().lower():
            raise ValueError(f"language code must be non-empty lower-case without spaces, got {self.code!r}")
        if not self.name:
            raise ValueError(f"language {self.code!r} needs a name")
        if self.ner_category is not None and self.ner_category not in _NER_CATEGORIES:
            raise ValueError(f"{self.code}: ner_category must be one of {_NER_CATEGORIES}, got {self.ner_category!r}")
        if (self.table2_seen is None) != (self.ner_category is None):
            raise ValueError(f"{self.code}: table2_seen and ner_category go together (both set for NER languages)")

    @property
    def wiki_articles_approx(self) -> int | None:
        """Table 1's Wikipedia size as a number ("57k" -> 57000, "1.2M" -> 1200000)."""
        if self.wiki_articles is None:
            return None
        scale = {"k": 1_000, "M": 1_000_000}[self.wiki_articles[-1]]
        return round(float(self.wiki_articles[:-1]) * scale)


def _ner(code, name, family, wiki, seen, category) -> Language:
    return Language(code, name, family, seen_by_xlmr=seen, wiki_articles=wiki,
                    table2_seen=category in ("high-resource", "low-resource seen"), ner_category=category)


# Table 1, in Table 1's row order (mhr before mi; Tables 2 and 5 swap those two, see NER_LANGUAGES).
# code, name, family, # Wikipedia articles, covered by XLM-R (as transcribed), Section 5 group
_TABLE = (
    _ner("en", "English", "Indo-European", "6.0M", True, "high-resource"),
    _ner("ja", "Japanese", "Japonic", "1.2M", True, "high-resource"),
    _ner("zh", "Chinese", "Sino-Tibetan", "1.1M", True, "high-resource"),
    _ner("ar", "Arabic", "Afro-Asiatic", "1.0M", True, "high-resource"),
    _ner("jv", "Javanese", "Austronesian", "57k", False, "low-resource seen"),  # check mark lost; see docstring
    _ner("sw", "Swahili", "Niger-Congo", "56k", True, "low-resource seen"),
    _ner("is", "Icelandic", "Indo-European", "49k", True, "low-resource seen"),
    _ner("my", "Burmese", "Sino-Tibetan", "45k", True, "low-resource seen"),
    _ner("qu", "Quechua", "Quechua", "22k", False, "low-resource unseen"),
    _ner("cdo", "Min Dong", "Sino-Tibetan", "15k", False, "low-resource unseen"),
    _ner("ilo", "Ilokano", "Austronesian", "14k", False, "low-resource unseen"),
    _ner("xmf", "Mingrelian", "Kartvelian", "13k", False, "low-resource unseen"),
    _ner("mhr", "Meadow Mari", "Uralic", "10k", False, "truly low-resource unseen"),
    _ner("mi", "Maori", "Austronesian", "7k", False, "truly low-resource unseen"),
    _ner("tk", "Turkmen", "Turkic", "6k", False, "truly low-resource unseen"),
    _ner("gn", "Guarani", "Tupian", "4k", False, "truly low-resource unseen"),
    # XQuAD languages not already above (Artetxe et al., 2020). The paper gives no Wikipedia sizes for them
    # beyond "more than 100k articles each".
    Language("de", "German", "Indo-European", seen_by_xlmr=True),
    Language("el", "Greek", "Indo-European", seen_by_xlmr=True),
    Language("es", "Spanish", "Indo-European", seen_by_xlmr=True),
    Language("hi", "Hindi", "Indo-European", seen_by_xlmr=True),
    Language("ro", "Romanian", "Indo-European", seen_by_xlmr=True),
    Language("ru", "Russian", "Indo-European", seen_by_xlmr=True),
    Language("th", "Thai", "Kra-Dai", seen_by_xlmr=True),
    Language("tr", "Turkish", "Turkic", seen_by_xlmr=True),
    Language("vi", "Vietnamese", "Austroasiatic", seen_by_xlmr=True),
)

LANGUAGES: dict[str, Language] = {lang.code: lang for lang in _TABLE}
assert len(LANGUAGES) == len(_TABLE), "duplicate code in the language table"

# The paper's column order in Tables 2 and 5 (mi before mhr, unlike Table 1's rows).
NER_LANGUAGES: tuple[str, ...] = (
    "en", "ja", "zh", "ar", "jv", "sw", "is", "my", "qu", "cdo", "ilo", "xmf", "mi", "mhr", "tk", "gn",
)
# All languages of the XQuAD release (Romanian was added to XQuAD after the paper).
XQUAD_LANGUAGES: tuple[str, ...] = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
# The 11 the paper evaluates, in Table 3's column order.
XQUAD_PAPER_LANGUAGES: tuple[str, ...] = ("en", "ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh")


class UnknownLanguageError(KeyError):
    """A language code that is not in the table (a KeyError whose message prints without repr quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def get_language(code: str) -> Language:
    """The table row for `code`; an unknown code raises UnknownLanguageError (a KeyError) listing the known codes and the nearest one."""
    try:
        return LANGUAGES[code]
    except (KeyError, TypeError):
        pass
    known = sorted(LANGUAGES)
    hint = ""
    if isinstance(code, str):
        # Match codes and (lower-cased) names, so "english" and "eng" both point at "en".
        candidates = {c: c for c in known} | {LANGUAGES[c].name.lower(): c for c in known}
        close = difflib.get_close_matches(code.strip().lower(), list(candidates), n=1, cutoff=0.5)
        if close:
            hint = f" Did you mean {candidates[close[0]]!r} ({LANGUAGES[candidates[close[0]]].name})?"
    raise UnknownLanguageError(f"unknown language code {code!r}.{hint} Known codes: {', '.join(known)}")


def get_languages(codes: Iterable[str]) -> tuple[Language, ...]:
    """`get_language` for each code, keeping the order."""
    return tuple(get_language(c) for c in codes)


TABLE2_SEEN_SPLIT_NOTE = (
    "Table 2's dashed line (languages seen in XLM-R's multilingual pretraining vs unseen). Table 1's "
    "'seen_by_xlmr' column as transcribed marks jv unseen because the text extraction lost its check mark; "
    "jv is on the seen side of Table 2 (and is one of XLM-R's 100 CC-100 languages)."
)


def split_seen_unseen(
    codes: Iterable[str] = NER_LANGUAGES, *, by: Literal["table1", "table2"]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split `codes` (order kept) into (seen, unseen).

    by="table1": `Language.seen_by_xlmr` (Table 1's column as transcribed; jv counts as unseen).
    by="table2": `Language.table2_seen` (Table 2's dashed line; jv counts as seen). Only NER languages have it;
        the others fall back to `seen_by_xlmr` (all XQuAD languages are seen either way).
    """
    if by not in ("table1", "table2"):
        raise ValueError(f"by must be 'table1' or 'table2', got {by!r}")
    seen: list[str] = []
    unseen: list[str] = []
    for lang in get_languages(codes):
        is_seen = lang.seen_by_xlmr if by == "table1" or lang.table2_seen is None else lang.table2_seen
        (seen if is_seen else unseen).append(lang.code)
    return tuple(seen), tuple(unseen)


__all__ = [
    "Language",
    "LANGUAGES",
    "NER_LANGUAGES",
    "TABLE2_SEEN_SPLIT_NOTE",
    "XQUAD_LANGUAGES",
    "XQUAD_PAPER_LANGUAGES",
    "UnknownLanguageError",
    "get_language",
    "get_languages",
    "split_seen_unseen",
]
