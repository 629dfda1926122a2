"""Parameter accounting: what each variant adds to a base model (the paper's Table 4).

The paper counts weight matrices only: per layer a language adapter adds 2·h·d_lang, a task
adapter 2·h·d_task, and the invertible adapter adds 4·(h/2)·(h/4) once (F and G, each a down and
an up projection). The counts are read off the real adapter modules, built on the meta device
(shapes, no memory), so they cannot drift from what ``madx`` adds. For XLM-R base (h=768, 12 layers, d=384/48) that is 8,257,536 (MAD-X),
7,962,624 (–INV) and 884,736 (–LAD –INV); with 270M as the base size: 3.05 / 2.94 / 0.32 %
(the paper truncates to two decimals). MAD-X 2.0 has no adapters in the last layer, so 11 layers'
worth: 7,593,984 (2.81 %) and, –INV, 7,299,072 (2.70 %). ``with_bias`` adds the bias vectors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig

from madx.adapters.config import AdapterConfig
from madx.adapters.sets import AdapterSet
from madx.tables import render_table
from madx.variants import VARIANTS, Variant

PAPER_BASE_PARAMETERS = 270_000_000  # "XLM-R Base (270M)" in the paper's Table 4

ARCH_PRESETS: dict[str, dict] = {
    "xlm-roberta-base": dict(
        model_type="xlm-roberta", vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
    ),
    "xlm-roberta-large": dict(
        model_type="xlm-roberta", vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
        intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1,
    ),
    "bert-base-multilingual-cased": dict(
        model_type="bert", vocab_size=119547, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
    ),
}


@dataclass(frozen=True)
class ParameterCount:
    variant: str
    paper_name: str
    added: int  # weight matrices only, as the paper counts
    added_with_bias: int
    base: int  # counted from the architecture
    percent_of_paper_base: float  # added / 270M · 100
    percent_of_base: float  # added_with_bias / base · 100


def config_for(arch: str) -> PretrainedConfig:
    """A built-in preset (no download) or anything ``AutoConfig`` can read (a local dir or hub name)."""
    if arch in ARCH_PRESETS:
        preset = dict(ARCH_PRESETS[arch])
        return AutoConfig.for_model(preset.pop("model_type"), **preset)
    return AutoConfig.from_pretrained(arch)


def count_base_parameters(config: PretrainedConfig) -> int:
    with torch.device("meta"):  # shapes only, no memory
        model = AutoModel.from_config(config)
    return sum(p.numel() for p in model.parameters())


def added_parameters(variant: Variant, hidden: int, layers: int, config: AdapterConfig, with_bias: bool) -> int:
    """What ``variant`` adds, counted on the adapter sets it loads (weight matrices, + biases with ``with_bias``);
    ``config`` with the variant's own settings (MAD-X 2.0: ``leave_out``) put over it, as the runner creates them."""
    config = variant.adapter_config(config)
    sets = []
    with torch.device("meta"):
        if variant.language_adapters:
            invertible = config.invertible_size(hidden) if variant.invertible_adapters else None
            sets.append(AdapterSet("language", layers, hidden, config.language_size(hidden), invertible, config.leave_out))
        if variant.task_adapter:
            sets.append(AdapterSet("task", layers, hidden, config.task_size(hidden), leave_out=config.leave_out))
    return sum(p.numel() for s in sets for p in s.parameters() if with_bias or p.ndim > 1)


def truncate(value: float, decimals: int = 2) -> float:
    scale = 10**decimals
    return math.floor(value * scale) / scale


def parameter_table(arch: str, config: AdapterConfig = AdapterConfig()) -> list[ParameterCount]:
    model_config = config_for(arch)
    base = count_base_parameters(model_config)
    rows = []
    for variant in VARIANTS.values():
        if not variant.uses_adapters:
            continue
        added = added_parameters(variant, model_config.hidden_size, model_config.num_hidden_layers, config, with_bias=False)
        with_bias = added_parameters(variant, model_config.hidden_size, model_config.num_hidden_layers, config, with_bias=True)
        rows.append(
            ParameterCount(
                variant=variant.name,
                paper_name=variant.paper_name,
                added=added,
                added_with_bias=with_bias,
                base=base,
                percent_of_paper_base=added / PAPER_BASE_PARAMETERS * 100,
                percent_of_base=with_bias / base * 100,
            )
        )
    return rows


def format_table(arch: str, rows: list[ParameterCount]) -> str:
    table = render_table(
        ["variant", "paper name", "added (paper)", "% of 270M", "added+bias", "% of base"],
        [[row.variant, row.paper_name, f"{row.added:,}", f"{truncate(row.percent_of_paper_base):.2f}",
          f"{row.added_with_bias:,}", f"{row.percent_of_base:.2f}"] for row in rows],
        align="llrrrr", pad=True,  # padded: read in a terminal
    )
    return "\n".join([
        f"Added parameters per variant on {arch} (base: {rows[0].base:,} parameters counted; the paper's Table 4 uses 270M)",
        "",
        table,
        "",
        "'added (paper)': weight matrices only, as the paper counts; '% of 270M' truncated to 2 decimals as in the paper.",
    ])


def table_as_json(rows: list[ParameterCount]) -> list[dict]:
    return [asdict(row) for row in rows]
