"""madx.tables.render_table: markdown tables, padded or not."""

import pytest

from madx.tables import column_alignment, render_table


def test_unpadded_is_compact_markdown_with_default_alignment():
    text = render_table(["method", "", "en"], [["XLM-R", "ours", "45.6 ± n/a"], ["", "paper", "44.2"]])
    assert text == ("| method |  | en |\n"
                    "|:---|---:|---:|\n"
                    "| XLM-R | ours | 45.6 ± n/a |\n"
                    "|  | paper | 44.2 |")
    assert column_alignment("", 0) == "l" and column_alignment("", 3) == "r" and column_alignment("lrc", 2) == "c"


def test_padded_columns_line_up():
    lines = render_table(["variant", "added", "x"], [["madx", 8257536, "a"], ["madx-lad-inv", 12, "bb"]], align="lrc",
                         pad=True).split("\n")
    assert len({len(line) for line in lines}) == 1  # every line as wide as the others
    assert lines[0] == "| variant      |   added |  x  |"
    assert lines[1] == "|:-------------|--------:|:---:|"
    assert lines[3] == "| madx-lad-inv |      12 |  bb |"


def test_cells_are_escaped_and_rows_checked():
    assert render_table(["a"], [["x|y\nz"]]).split("\n")[2] == "| x\\|y z |"
    with pytest.raises(ValueError, match="row 0 has 1 cells; the table has 2 columns"):
        render_table(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="align letters must be l, r or c"):
        render_table(["a"], [], align="x")
