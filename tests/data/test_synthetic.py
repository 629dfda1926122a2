"""madx.data.synthetic: the files it writes load with the real loaders; its counts are checked."""

from __future__ import annotations

import pytest

from madx.data import synthetic
from madx.data.mlm import read_text_files
from madx.data.squad import read_squad
from madx.data.wikiann import read_wikiann


def test_written_files_load_with_the_real_loaders(tmp_path):
    toks, tags = read_wikiann(synthetic.write_wikiann(tmp_path / "train-qu.tsv", "qu", 7))
    assert len(toks) == 7 and (toks, tags) == tuple(map(list, zip(*synthetic.ner_sentences("qu", 7))))
    assert len(read_squad(synthetic.write_squad(tmp_path / "xquad.qu.json", "qu", 5))) == 5
    assert len(read_text_files(synthetic.write_text(tmp_path / "qu.txt", "qu", 9))) == 9


@pytest.mark.parametrize("fn", [synthetic.ner_sentences, synthetic.squad_examples])
@pytest.mark.parametrize(
    "n, seed, error, match",
    [
        (-1, 0, ValueError, "n must be >= 0, got -1"),
        (2.0, 0, TypeError, "n must be an int, got float"),
        ("3", 0, TypeError, "n must be an int, got str"),
        (3, None, TypeError, "seed must be an int, got NoneType"),
    ],
)
def test_number_checks(fn, n, seed, error, match):
    with pytest.raises(error, match=match):
        fn("qu", n, seed)
