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
    assert [row["added"] for row in data["rows"]] == [8_257_536, 7_962_624, 884_736]
