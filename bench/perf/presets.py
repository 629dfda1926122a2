"""Presets and workload names as plain data: what ``madx bench perf --help`` lists, without importing
torch, transformers or the workload builders (``bench.perf.workloads``, which checks it names the
same workloads)."""

from __future__ import annotations

from dataclasses import dataclass

# workload key -> name, in the order the benchmark runs them (builders in bench.perf.workloads)
WORKLOAD_NAMES: dict[str, str] = {"a": "la-mlm", "f": "la-mlm-materialized", "b": "la-mlm-full-vocab",
                                  "c": "full-ft-mlm", "d": "task-ner", "e": "zero-shot-eval"}


@dataclass(frozen=True)
class Preset:
    """Model dimensions, batch shape and measurement lengths."""

    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int
    seq_len: int
    batch: int
    steps: int  # timed steps per configuration
    warmup: int  # untimed steps first (the first compiles under torch.compile)
    autocast: str  # "none" (fp32) or "bf16"
    min_fill: float = 0.75  # padded batch: each sequence has uniform[min_fill·T, T] real tokens, then padding
    mask_probability: float = 0.15  # share of a sequence's ordinary tokens masked for MLM (exact count per sequence)
    matmul_size: int = 2048  # the square matmul measured for the FLOP/s reference
    note: str = ""

    def __post_init__(self) -> None:
        if min(self.layers, self.hidden, self.heads, self.ffn, self.vocab, self.seq_len, self.batch, self.steps) <= 0:
            raise ValueError(f"preset {self.name!r}: sizes and steps must be positive")
        if self.warmup < 0:
            raise ValueError(f"preset {self.name!r}: warmup must be >= 0")
        if self.hidden % self.heads or self.hidden % 32:
            raise ValueError(f"preset {self.name!r}: hidden={self.hidden} must be a multiple of heads and of 32 "
                             "(language adapter h/2, invertible h/4, task adapter h/16)")
        if self.autocast not in ("none", "bf16"):
            raise ValueError(f"preset {self.name!r}: autocast must be 'none' or 'bf16', got {self.autocast!r}")
        if not 0 < self.min_fill <= 1 or not 0 < self.mask_probability < 1:
            raise ValueError(f"preset {self.name!r}: min_fill must be in (0, 1] and mask_probability in (0, 1)")


PRESETS: dict[str, Preset] = {
    "cpu-small": Preset(
        "cpu-small", layers=4, hidden=256, heads=4, ffn=1024, vocab=32000, seq_len=128, batch=8,
        steps=10, warmup=3, autocast="none",
        note="a scaled-down XLM-R that finishes in minutes on 2 CPU cores; fp32",
    ),
    "xlmr-base": Preset(
        "xlmr-base", layers=12, hidden=768, heads=12, ffn=3072, vocab=250002, seq_len=256, batch=64,
        steps=20, warmup=5, autocast="bf16", matmul_size=8192,
        note="XLM-R base dimensions (the MAD-X paper's encoder), bf16 autocast over fp32 weights",
    ),
    "tiny": Preset(
        "tiny", layers=2, hidden=32, heads=4, ffn=64, vocab=101, seq_len=16, batch=2,
        steps=2, warmup=1, autocast="none", matmul_size=256, note="for tests only",
    ),
}
