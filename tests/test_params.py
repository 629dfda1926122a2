import json
import subprocess
import sys

import pytest

from madx.adapters import AdapterConfig
from madx.params import added_parameters, parameter_table, truncate
from madx.variants import VARIANTS


def test_xlmr_base_matches_the_papers_table4_exactly():
    rows = {row.variant: row for row in parameter_table("xlm-roberta-base")}
    # worked out by hand: LA 12·2·768·384 = 7,077,888; INV 4·384·192 = 294,912; TA 12·2·768·48 = 884,736
    assert rows["madx"].added == 7_077_888 + 294_912 + 884_736 == 8_257_536
    assert rows["madx-inv"].added == 7_962_624
    assert rows["madx-lad-inv"].added == 884_736
    assert [truncate(rows[v].percent_of_paper_base) for v in ("madx", "madx-inv", "madx-lad-inv")] == [3.05, 2.94, 0.32]
    # biases: LA 12·(384+768), INV 2·(192+384), TA 12·(48+768)
    assert rows["madx"].added_with_bias == 8_257_536 + 12 * 1152 + 2 * 576 + 12 * 816
    # XLM-R base with pooler: embeddings 250002·768 + 514·768 + 768 + LN, 12 layers, pooler
    assert 277_000_000 < rows["madx"].base < 279_000_000


def test_madx2_leaves_the_last_layer_out_of_table4():
    rows = {row.variant: row for row in parameter_table("xlm-roberta-base")}
    # by hand: the adapters of 11 of the 12 layers; the invertible adapter (on the embeddings) stays
    # LA 11·2·768·384 = 6,488,064; INV 4·384·192 = 294,912; TA 11·2·768·48 = 811,008
    assert rows["madx2"].added == 6_488_064 + 294_912 + 811_008 == 7_593_984
    assert rows["madx2-inv"].added == 6_488_064 + 811_008 == 7_299_072
    assert rows["madx"].added - rows["madx2"].added == 2 * 768 * 384 + 2 * 768 * 48  # one layer's LA + TA
    # 7,593,984 / 270M = 2.8126 %, 7,299,072 / 270M = 2.7034 %
    assert [truncate(rows[v].percent_of_paper_base) for v in ("madx2", "madx2-inv")] == [2.81, 2.70]
    # biases: LA 11·(384+768), INV 2·(192+384), TA 11·(48+768)
    assert rows["madx2"].added_with_bias == 7_593_984 + 11 * 1152 + 2 * 576 + 11 * 816 == 7_616_784
    assert rows["madx2-inv"].added_with_bias == 7_299_072 + 11 * 1152 + 11 * 816 == 7_320_720
    assert [rows[v].paper_name for v in ("madx2", "madx2-inv")] == ["MAD-X 2.0", "MAD-X 2.0 –INV"]
    assert list(rows)[:3] == ["madx", "madx-inv", "madx-lad-inv"], "the paper's rows keep their order"


def test_baselines_add_nothing():
    for name in ("full-ft", "mlm-src", "mlm-trg"):
        assert added_parameters(VARIANTS[name], 768, 12, AdapterConfig(), with_bias=True) == 0


def test_counts_follow_the_config_and_reject_sizes_that_do_not_divide():
    rows = {row.variant: row for row in parameter_table("xlm-roberta-base", AdapterConfig(task_reduction_factor=8))}
    assert rows["madx-lad-inv"].added == 12 * 2 * 768 * 96
    with pytest.raises(ValueError, match="task_reduction_factor=7 must divide the size 768"):
        parameter_table("xlm-roberta-base", AdapterConfig(task_reduction_factor=7))
    with pytest.raises(ValueError, match="must be a positive integer"):
        AdapterConfig(language_reduction_factor=0)


@pytest.mark.slow
def test_cli_prints_table_and_json():
    out = subprocess.run([sys.executable, "-m", "madx", "params", "--arch", "xlm-roberta-base"], capture_output=True, text=True, check=True).stdout
    assert "8,257,536" in out and "7,962,624" in out and "884,736" in out and "3.05" in out
    data = json.loads(subprocess.run([sys.executable, "-m", "madx", "params", "--arch", "xlm-roberta-base", "--json"], capture_output=True, text=True, check=True).stdout)
    assert [row["added"] for row in data["rows"]] == [8_257_536, 7_962_624, 884_736, 7_593_984, 7_299_072]
