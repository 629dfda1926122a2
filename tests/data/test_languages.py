"""madx.data.languages: the transcribed table, the paper's orders and splits, helpful errors."""

from __future__ import annotations

import dataclasses

import pytest

from madx.data.languages import (
    LANGUAGES,
    NER_LANGUAGES,
    XQUAD_LANGUAGES,
    XQUAD_PAPER_LANGUAGES,
    Language,
    UnknownLanguageError,
    get_language,
    get_languages,
    split_seen_unseen,
)

TABLE1_ROWS = [lang for lang in LANGUAGES.values() if lang.ner_category is not None]


def test_ner_languages_in_the_papers_column_order():
    assert NER_LANGUAGES == tuple("en ja zh ar jv sw is my qu cdo ilo xmf mi mhr tk gn".split())
    assert {lang.code for lang in TABLE1_ROWS} == set(NER_LANGUAGES)


def test_table1_spot_checks():
    assert get_language("cdo") == Language(
        "cdo", "Min Dong", "Sino-Tibetan", seen_by_xlmr=False, wiki_articles="15k",
        table2_seen=False, ner_category="low-resource unseen",
    )
    assert (get_language("en").wiki_articles, get_language("en").family) == ("6.0M", "Indo-European")
    assert (get_language("gn").name, get_language("gn").family) == ("Guarani", "Tupian")
    assert get_language("mhr").name == "Meadow Mari" and get_language("mi").name == "Maori"


def test_table1_invariants_from_the_paper_text():
    # "16 languages from 11 language families" (Section 5).
    assert len(TABLE1_ROWS) == 16
    assert len({lang.family for lang in TABLE1_ROWS}) == 11
    # Four groups of four (Section 5).
    for category in ("high-resource", "low-resource seen", "low-resource unseen", "truly low-resource unseen"):
        assert sum(lang.ner_category == category for lang in TABLE1_ROWS) == 4
    # Table 1 rows are sorted by Wikipedia size.
    sizes = [lang.wiki_articles_approx for lang in TABLE1_ROWS]
    assert sizes == sorted(sizes, reverse=True)
    assert get_language("jv").wiki_articles_approx == 57_000
    assert get_language("ja").wiki_articles_approx == 1_200_000


def test_javanese_is_kept_as_transcribed_and_table2_puts_it_on_the_seen_side():
    jv = get_language("jv")
    assert jv.seen_by_xlmr is False  # Table 1's column as transcribed (lost check mark)
    assert jv.table2_seen is True  # left of Table 2's dashed line


def test_split_seen_unseen_by_table2_reproduces_the_dashed_line():
    seen, unseen = split_seen_unseen(by="table2")
    assert seen == ("en", "ja", "zh", "ar", "jv", "sw", "is", "my")
    assert unseen == ("qu", "cdo", "ilo", "xmf", "mi", "mhr", "tk", "gn")


def test_split_seen_unseen_by_table1_follows_the_column():
    seen, unseen = split_seen_unseen(by="table1")
    assert seen == ("en", "ja", "zh", "ar", "sw", "is", "my")
    assert unseen == ("jv", "qu", "cdo", "ilo", "xmf", "mi", "mhr", "tk", "gn")
    # Order follows the input; XQuAD languages are all seen.
    assert split_seen_unseen(["gn", "en"], by="table1") == (("en",), ("gn",))
    assert split_seen_unseen(XQUAD_LANGUAGES, by="table2") == (XQUAD_LANGUAGES, ())


def test_split_requires_an_explicit_choice():
    with pytest.raises(TypeError):
        split_seen_unseen(NER_LANGUAGES)  # which "seen" is meant must be said
    with pytest.raises(ValueError, match="'table1' or 'table2'"):
        split_seen_unseen(NER_LANGUAGES, by="xlmr")


def test_xquad_languages():
    assert len(XQUAD_LANGUAGES) == 12 and "ro" in XQUAD_LANGUAGES
    assert XQUAD_PAPER_LANGUAGES == ("en", "ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh")  # Table 3
    assert set(XQUAD_LANGUAGES) - set(XQUAD_PAPER_LANGUAGES) == {"ro"}
    assert [lang.name for lang in get_languages(["de", "el", "th", "vi"])] == ["German", "Greek", "Thai", "Vietnamese"]
    assert all(lang.seen_by_xlmr for lang in get_languages(XQUAD_LANGUAGES))
    assert get_language("ro").wiki_articles is None and get_language("ro").table2_seen is None


@pytest.mark.parametrize("query, suggestion", [("eng", "'en'"), ("english", "'en'"), ("Javanese", "'jv'"), ("cdo ", "'cdo'")])
def test_unknown_code_suggests_the_nearest_and_lists_known(query, suggestion):
    with pytest.raises(KeyError) as info:
        get_language(query)
    assert isinstance(info.value, UnknownLanguageError)
    message = str(info.value)
    assert f"Did you mean {suggestion}" in message
    assert "Known codes: ar, cdo, de," in message


def test_unknown_code_without_a_close_match():
    with pytest.raises(UnknownLanguageError, match=r"unknown language code 'xx'\. Known codes"):
        get_language("xx")


def test_language_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_language("en").name = "Englisch"
    with pytest.raises(ValueError, match="lower-case"):
        Language("EN", "English", "Indo-European", seen_by_xlmr=True)
    with pytest.raises(ValueError, match="ner_category"):
        Language("xx", "X", "Y", seen_by_xlmr=True, table2_seen=True, ner_category="medium")
    with pytest.raises(ValueError, match="go together"):
        Language("xx", "X", "Y", seen_by_xlmr=True, table2_seen=True)
