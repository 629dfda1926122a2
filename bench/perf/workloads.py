"""The measured workloads, built from random-init XLM-R-shaped models (no downloads).

    a  la-mlm               language adapter + invertible adapter MLM step, base frozen: the production path,
                            a packed batch (every sequence full, no attention_mask) and masked_lm_loss's default
                            chunked linear cross-entropy (no [masked x vocab] logits tensor)
    f  la-mlm-materialized  (a) with loss_impl="materialized": logits at masked positions, materialised
    b  la-mlm-full-vocab    the same model on a padded batch, logits at every position (the HF default head and
                            loss): the reference
    c  full-ft-mlm          full fine-tuning MLM step, every weight trains; packed, chunked loss like (a)
    d  task-ner             task-adapter NER step: Stack(src, ner), only the task adapter and the classifier train
    e  zero-shot-eval       evaluation forward, no grad: Stack(tgt, ner), the target language swapped in

(d) and (e) run on the padded batch: NER sentences are not packed. Each builder returns a
``Prepared``: the model, a ``compute(batch)`` closure (the loss for a training step, the logits
for evaluation), the batch, and the ``StepShape`` the FLOP model counts. Everything goes through
madx's public API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaForTokenClassification

import madx
from bench.perf.flops import BASE, HEAD, LANGUAGE, TASK, StepShape
from bench.perf.presets import PRESETS, WORKLOAD_NAMES, Preset  # noqa: F401  (re-exported)
from madx.tasks.mlm import IGNORE_INDEX, MaskedLMObjective, full_vocabulary_mlm_loss

NUM_NER_LABELS = 7  # WikiANN: O, B/I-PER, B/I-ORG, B/I-LOC
FIRST_ORDINARY_ID = 5  # XLM-R: 0 <s>, 1 <pad>, 2 </s>, 3 <unk>; ids from here on are "words"
BOS_ID, PAD_ID, EOS_ID = 0, 1, 2


@dataclass(frozen=True)
class Batches:
    """One fixed batch per input kind, shared by every workload (so the rows are comparable).

    ``mlm`` is packed like ``madx.data.mlm``'s blocks: every sequence is ``<s>`` + T-2 tokens +
    ``</s>``, and there is no ``attention_mask`` key, so nothing is padding and SDPA may take its
    flash kernel. ``mlm_padded`` has lengths uniform in [min_fill·T, T], then ``<pad>``, and an
    ``attention_mask``: the HF reference (b). Both mask exactly round(p·n) of a sequence's n
    maskable tokens (packed: all but ``<s>`` and ``</s>``; padded: the real ones).
    """

    mlm: dict[str, torch.Tensor]  # packed: input_ids, labels (-100 except at masked positions); no attention_mask
    mlm_padded: dict[str, torch.Tensor]  # input_ids, attention_mask, labels
    ner: dict[str, torch.Tensor]  # input_ids, attention_mask, labels (a tag per real token, -100 on padding)

    def to(self, device: torch.device) -> "Batches":
        def move(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.to(device) for k, v in batch.items()}

        return Batches(move(self.mlm), move(self.mlm_padded), move(self.ner))


def token_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(non-pad tokens, executed tokens B·T) of a batch; without an attention_mask every token is real."""
    executed = batch["input_ids"].numel()
    mask = batch.get("attention_mask")
    return (executed if mask is None else int(mask.sum())), executed


def masked_positions(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"] != IGNORE_INDEX).sum())


def _mask_exactly(ids: torch.Tensor, eligible: torch.Tensor, p: float,
                  g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask round(p·n) of each row's n eligible positions: (masked input_ids, labels)."""
    masked = torch.zeros_like(eligible)
    for row in range(ids.shape[0]):
        candidates = eligible[row].nonzero().squeeze(1)  # (n,)
        count = max(1, int(round(p * len(candidates))))
        masked[row, candidates[torch.randperm(len(candidates), generator=g)[:count]]] = True
    mask_id = FIRST_ORDINARY_ID - 1  # a stand-in for <mask>; the model is random anyway
    return (torch.where(masked, torch.full_like(ids, mask_id), ids),
            torch.where(masked, ids, torch.full_like(ids, IGNORE_INDEX)))


def make_batches(preset: Preset, seed: int = 0) -> Batches:
    """Random ids: a packed MLM batch, a padded one with a deterministic padding pattern, and NER tags."""
    g = torch.Generator().manual_seed(seed)
    B, T = preset.batch, preset.seq_len
    ids = torch.randint(FIRST_ORDINARY_ID, preset.vocab, (B, T), generator=g)  # (B, T)

    packed = ids.clone()
    packed[:, 0], packed[:, -1] = BOS_ID, EOS_ID
    ordinary = packed >= FIRST_ORDINARY_ID  # (B, T)
    input_ids, labels = _mask_exactly(packed, ordinary, preset.mask_probability, g)
    mlm = {"input_ids": input_ids, "labels": labels}

    low = max(1, int(round(preset.min_fill * T)))
    lengths = torch.randint(low, T + 1, (B,), generator=g)  # (B,)
    attention_mask = (torch.arange(T).expand(B, T) < lengths[:, None]).long()  # (B, T)
    padded = torch.where(attention_mask.bool(), ids, torch.full_like(ids, PAD_ID))  # (B, T)
    input_ids, labels = _mask_exactly(padded, attention_mask.bool(), preset.mask_probability, g)
    mlm_padded = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    tags = torch.randint(0, NUM_NER_LABELS, (B, T), generator=g)
    ner = {"input_ids": padded, "attention_mask": attention_mask,
           "labels": torch.where(attention_mask.bool(), tags, torch.full_like(tags, IGNORE_INDEX))}
    return Batches(mlm, mlm_padded, ner)


@dataclass
class Prepared:
    model: nn.Module
    compute: Callable[[dict[str, torch.Tensor]], torch.Tensor]  # loss (train) or logits (eval)
    batch: dict[str, torch.Tensor]
    train: bool
    trainable: tuple[str, ...]  # parts for the FLOP model
    shape: StepShape
    uses_adapters: bool
    # the compile variant's compute; None: torch.compile(compute), the whole forward + loss
    compiled: Callable[[], Callable[[dict[str, torch.Tensor]], torch.Tensor]] | None = None

    def compile(self) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        return self.compiled() if self.compiled is not None else torch.compile(self.compute)

    @property
    def tokens(self) -> tuple[int, int]:
        """(non-pad tokens, executed tokens) of this workload's batch."""
        return token_counts(self.batch)


@dataclass(frozen=True)
class Workload:
    key: str
    name: str
    title: str
    logits: str  # where the vocabulary/label logits are computed, and how
    batch: str  # "packed" or "padded"
    build: Callable[[Preset, Batches, torch.device], Prepared]


def _config(preset: Preset, **extra) -> XLMRobertaConfig:
    return XLMRobertaConfig(
        vocab_size=preset.vocab, hidden_size=preset.hidden, num_hidden_layers=preset.layers,
        num_attention_heads=preset.heads, intermediate_size=preset.ffn,
        max_position_embeddings=max(514, preset.seq_len + 2),  # XLM-R positions start after the padding index
        type_vocab_size=1, pad_token_id=PAD_ID, bos_token_id=0, eos_token_id=2, **extra,
    )


def _shape(preset: Preset, head: str, head_rows: int, model: nn.Module, language: str | None = None,
           task: str | None = None) -> StepShape:
    store = madx.get_store(model) if (language or task) else None
    la = store.get(language) if language else None
    ta = store.get(task) if task else None
    return StepShape(
        layers=preset.layers, hidden=preset.hidden, ffn=preset.ffn, vocab=preset.vocab, batch=preset.batch,
        seq_len=preset.seq_len, head=head, head_rows=head_rows, num_labels=NUM_NER_LABELS if head == "token" else 0,
        language_bottleneck=la.bottleneck_size if la else 0,
        invertible_bottleneck=(la.invertible_bottleneck_size or 0) if la else 0,
        task_bottleneck=ta.bottleneck_size if ta else 0,
    )


def _mlm_model(preset: Preset, device: torch.device, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with device:  # initialise on the device: a 250k x 768 random init is seconds on the CPU
        return XLMRobertaForMaskedLM(_config(preset)).train()


def _ner_model(preset: Preset, device: torch.device, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    with device:
        model = XLMRobertaForTokenClassification(_config(preset, num_labels=NUM_NER_LABELS))
    madx.add_language_adapter(model, "src")  # MAD-X: h/2, invertible h/2 -> h/4 -> h/2
    madx.add_task_adapter(model, "ner")  # MAD-X: h/16
    return model


def _objective(model: nn.Module, loss_impl: str | None):
    """The production MLM step (madx.phases.train_mlm): ``MaskedLMObjective``, eager and compiled.
    Its compiled form compiles the encoder only (static shapes); the masked-row head and loss stay eager."""
    eager = MaskedLMObjective(model, loss_impl=loss_impl)

    def compiled():
        objective = MaskedLMObjective(model, loss_impl=loss_impl, compile=True)
        return lambda batch: objective(**batch)

    return (lambda batch: eager(**batch)), compiled


def _language_adapter_model(preset: Preset, device: torch.device) -> nn.Module:
    model = _mlm_model(preset, device)
    madx.add_language_adapter(model, "src")
    madx.set_active(model, madx.Stack("src"))
    madx.set_trainable(model, adapters=["src"])
    return model


def build_la_mlm(preset: Preset, batches: Batches, device: torch.device, loss_impl: str | None = None) -> Prepared:
    """(a), or (f) with ``loss_impl="materialized"``: packed batch, the loss at masked positions only."""
    model = _language_adapter_model(preset, device)
    compute, compiled = _objective(model, loss_impl)
    return Prepared(model, compute, batches.mlm, True, (LANGUAGE,),
                    _shape(preset, "mlm", masked_positions(batches.mlm), model, language="src"),
                    uses_adapters=True, compiled=compiled)


def build_la_mlm_materialized(preset: Preset, batches: Batches, device: torch.device) -> Prepared:
    return build_la_mlm(preset, batches, device, loss_impl="materialized")


def build_la_mlm_full_vocab(preset: Preset, batches: Batches, device: torch.device) -> Prepared:
    model = _language_adapter_model(preset, device)
    return Prepared(model, lambda batch: full_vocabulary_mlm_loss(model, batch), batches.mlm_padded, True,
                    (LANGUAGE,), _shape(preset, "mlm", preset.batch * preset.seq_len, model, language="src"),
                    uses_adapters=True)


def build_full_ft_mlm(preset: Preset, batches: Batches, device: torch.device) -> Prepared:
    model = _mlm_model(preset, device)  # no adapters attached: the plain model
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    compute, compiled = _objective(model, None)
    return Prepared(model, compute, batches.mlm, True, (BASE,),
                    _shape(preset, "mlm", masked_positions(batches.mlm), model), uses_adapters=False,
                    compiled=compiled)


def build_task_ner(preset: Preset, batches: Batches, device: torch.device) -> Prepared:
    model = _ner_model(preset, device).train()
    madx.set_active(model, madx.Stack("src", "ner"))
    madx.set_trainable(model, adapters=["ner"], task_head=True)
    return Prepared(model, lambda batch: model(**batch).loss, batches.ner, True, (TASK, HEAD),
                    _shape(preset, "token", preset.batch * preset.seq_len, model, language="src", task="ner"),
                    uses_adapters=True)


def build_zero_shot_eval(preset: Preset, batches: Batches, device: torch.device) -> Prepared:
    model = _ner_model(preset, device).eval()
    madx.add_language_adapter(model, "tgt")
    madx.set_active(model, madx.Stack("tgt", "ner"))
    madx.set_trainable(model)  # nothing trains
    batch = {k: v for k, v in batches.ner.items() if k != "labels"}
    return Prepared(model, lambda b: model(**b).logits, batch, False, (),
                    _shape(preset, "token", preset.batch * preset.seq_len, model, language="tgt", task="ner"),
                    uses_adapters=True)


WORKLOADS: tuple[Workload, ...] = (
    Workload("a", "la-mlm", "LA+INV MLM step (base frozen)", "masked positions, chunked CE (default)", "packed",
             build_la_mlm),
    Workload("f", "la-mlm-materialized", "LA+INV MLM step (base frozen)", "masked positions, materialised logits",
             "packed", build_la_mlm_materialized),
    Workload("b", "la-mlm-full-vocab", "LA+INV MLM step (base frozen)", "every position (HF default)", "padded",
             build_la_mlm_full_vocab),
    Workload("c", "full-ft-mlm", "full fine-tuning MLM step", "masked positions, chunked CE (default)", "packed",
             build_full_ft_mlm),
    Workload("d", "task-ner", "task-adapter NER step, Stack(src, ner)", "every position (7 labels)", "padded",
             build_task_ner),
    Workload("e", "zero-shot-eval", "zero-shot eval forward, Stack(tgt, ner), no grad", "every position (7 labels)",
             "padded", build_zero_shot_eval),
)
assert {w.key: w.name for w in WORKLOADS} == WORKLOAD_NAMES, "bench/perf/presets.py names the same workloads"
