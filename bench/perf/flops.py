"""Analytic FLOPs of one step of each benchmark workload, frozen weights counted correctly.

Only matrix products are counted, at 2·m·n·k FLOPs each: the encoder's linear layers, attention's
two activation×activation products (QKᵀ and AV, 2·T·T·h each per layer and sequence), the
adapters, the invertible adapter and the heads. Elementwise work (softmax, LayerNorm, GELU,
dropout, the loss), the embedding lookup and the optimizer are not counted; they are a few
percent of the matmul FLOPs at these sizes. Shapes are counted as executed: padded positions
cost as much as real ones (the dense kernels compute them), so MFU here is of executed shapes
(on a packed batch every position is text, so executed and useful FLOPs agree).

These are model FLOPs: nothing is counted twice. Two kernels execute more and
``torch.utils.flop_counter.FlopCounterMode`` (which bench/perf/measure.py runs beside this model)
sees it: a fused SDPA backward (flash, efficient, cuDNN) recomputes QKᵀ, 5 products where the
backward below counts 4. The chunked cross-entropy (``madx.kernels.cross_entropy``) runs exactly
the decoder products counted here: the logits, then d(hidden) and, when the weight trains,
d(weight), all inside its forward, with no recomputation in backward.

Backward. A step is the list of products in forward order. Walking it bottom-up, a product's
input needs a gradient iff some trainable weight lies below it (the embeddings when the base
trains, an adapter when only adapters train). Then, per product:

    weight product (x·Wᵀ):   backward = [W trains]·fwd (weight grad) + [input needs grad]·fwd (input grad)
    activation product:      backward = [inputs need grad]·2·fwd (a grad for each operand)

So a frozen base under a trainable adapter costs 1× its forward in backward (activation grads
only) where full fine-tuning costs 2×, and the layers below the lowest trainable adapter cost
nothing in backward (task-adapter training: the embeddings, layer 0's attention, FFN and
language adapter).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASE, LANGUAGE, TASK, HEAD = "base", "language", "task", "head"
TRAINABLE_PARTS = (BASE, LANGUAGE, TASK, HEAD)


@dataclass(frozen=True)
class Product:
    """One matrix product of the forward pass."""

    name: str
    flops: int  # forward FLOPs, 2·m·n·k
    part: str  # which trainable part its weight belongs to (BASE, LANGUAGE, TASK, HEAD); "" for activation×activation
    group: str  # for the breakdown: embeddings, encoder, attention, adapters, invertible, head

    @property
    def has_weight(self) -> bool:
        return bool(self.part)


@dataclass(frozen=True)
class StepShape:
    """What one step computes. ``head_rows``: rows the head runs on (masked positions or B·T)."""

    layers: int
    hidden: int
    ffn: int
    vocab: int
    batch: int
    seq_len: int
    head: str  # "mlm" (transform + tied decoder) or "token" (a linear classifier)
    head_rows: int
    num_labels: int = 0
    language_bottleneck: int = 0  # 0: no language adapter
    invertible_bottleneck: int = 0  # 0: no invertible adapter (its F and G are h/2 -> k -> h/2)
    task_bottleneck: int = 0  # 0: no task adapter

    def __post_init__(self) -> None:
        if self.head not in ("mlm", "token"):
            raise ValueError(f"head must be 'mlm' or 'token', got {self.head!r}")
        if self.head == "token" and self.num_labels <= 0:
            raise ValueError("a token-classification head needs num_labels > 0")
        if not 0 <= self.head_rows <= self.batch * self.seq_len:
            raise ValueError(f"head_rows={self.head_rows} must be in [0, batch·seq_len={self.batch * self.seq_len}]")


@dataclass(frozen=True)
class FlopCount:
    forward: int
    backward: int
    by_group: dict[str, int] = field(default_factory=dict)  # forward + backward per group

    @property
    def total(self) -> int:
        return self.forward + self.backward

    def to_dict(self) -> dict:
        return {"forward": self.forward, "backward": self.backward, "total": self.total, "by_group": dict(self.by_group)}


def _coupling(prefix: str, rows: int, hidden: int, k: int, order: str) -> list[Product]:
    """NICE coupling: F and G, each h/2 -> k -> h/2; forward runs F then G, the inverse G then F."""
    half = hidden // 2
    products = []
    for net in order:
        products.append(Product(f"{prefix}.{net}.down", 2 * rows * half * k, LANGUAGE, "invertible"))
        products.append(Product(f"{prefix}.{net}.up", 2 * rows * k * half, LANGUAGE, "invertible"))
    return products


def products(shape: StepShape) -> list[Product]:
    """Every matrix product of one forward pass, in forward order."""
    s = shape
    tokens, h = s.batch * s.seq_len, s.hidden
    out = [Product("embeddings", 0, BASE, "embeddings")]  # a lookup: no FLOPs, but its weight may train
    if s.invertible_bottleneck:
        out += _coupling("invertible", tokens, h, s.invertible_bottleneck, "FG")
    for i in range(s.layers):
        p = f"layer{i}"
        out += [
            Product(f"{p}.query", 2 * tokens * h * h, BASE, "encoder"),
            Product(f"{p}.key", 2 * tokens * h * h, BASE, "encoder"),
            Product(f"{p}.value", 2 * tokens * h * h, BASE, "encoder"),
            Product(f"{p}.scores", 2 * s.batch * s.seq_len * s.seq_len * h, "", "attention"),  # QKᵀ, all heads
            Product(f"{p}.context", 2 * s.batch * s.seq_len * s.seq_len * h, "", "attention"),  # softmax·V
            Product(f"{p}.attention_out", 2 * tokens * h * h, BASE, "encoder"),
            Product(f"{p}.ffn_in", 2 * tokens * h * s.ffn, BASE, "encoder"),
            Product(f"{p}.ffn_out", 2 * tokens * s.ffn * h, BASE, "encoder"),
        ]
        for part, d in ((LANGUAGE, s.language_bottleneck), (TASK, s.task_bottleneck)):
            if d:
                out += [
                    Product(f"{p}.{part}_adapter.down", 2 * tokens * h * d, part, "adapters"),
                    Product(f"{p}.{part}_adapter.up", 2 * tokens * d * h, part, "adapters"),
                ]
    rows = s.head_rows
    if s.head == "mlm":
        out.append(Product("mlm_head.dense", 2 * rows * h * h, BASE, "head"))
        if s.invertible_bottleneck:
            out += _coupling("invertible_inverse", rows, h, s.invertible_bottleneck, "GF")
        out.append(Product("mlm_head.decoder", 2 * rows * h * s.vocab, BASE, "head"))  # tied to the embeddings
    else:
        out.append(Product("classifier", 2 * rows * h * s.num_labels, HEAD, "head"))
    return out


def step_flops(shape: StepShape, trainable: tuple[str, ...] | frozenset[str] = (), train: bool = True) -> FlopCount:
    """FLOPs of one forward (+ backward when ``train``) with the given parts trainable."""
    unknown = set(trainable) - set(TRAINABLE_PARTS)
    if unknown:
        raise ValueError(f"unknown trainable part(s) {sorted(unknown)}; known: {', '.join(TRAINABLE_PARTS)}")
    if train and not trainable:
        raise ValueError("a training step needs at least one trainable part")
    forward = backward = 0
    by_group: dict[str, int] = {}
    grad_below = False  # does some trainable weight lie below the current product?
    for product in products(shape):
        trains = product.has_weight and product.part in trainable
        if not train:
            back = 0
        elif product.has_weight:
            back = (product.flops if trains else 0) + (product.flops if grad_below else 0)
        else:
            back = 2 * product.flops if grad_below else 0
        grad_below = grad_below or trains
        forward += product.flops
        backward += back
        by_group[product.group] = by_group.get(product.group, 0) + product.flops + back
    return FlopCount(forward, backward, {g: v for g, v in by_group.items() if v})
