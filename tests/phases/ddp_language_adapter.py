"""Run under ``accelerate launch --num_processes 2``: train a language adapter data-parallel and
write this rank's adapter weights to OUT/rank<N>.pt (tests/phases/test_ddp.py compares them)."""

import sys
from pathlib import Path

import torch

import madx
from madx.data import synthetic
from madx.data.tokenizer import build_tiny_tokenizer, synthetic_corpus
from madx.phases import MLMData, train_language_adapter
from madx.runtime import Runtime
from madx.train import TrainConfig
from tests.conftest import tiny_model

out = Path(sys.argv[1])
runtime = Runtime.distributed("no")
tokenizer = build_tiny_tokenizer(synthetic_corpus("qu", 200), vocab_size=300)
text = out / "qu.txt"
if runtime.is_main_process:
    synthetic.write_text(text, "qu", 200)
runtime.accelerator.wait_for_everyone()
model = tiny_model("xlm-roberta", "mlm", vocab_size=len(tokenizer), max_position_embeddings=40)
config = TrainConfig(learning_rate=5e-3, batch_size=4, max_steps=5, seed=1, log_every=5)
train_language_adapter(model, "qu", [text], tokenizer, config, runtime, data=MLMData(max_seq_length=24))
state = {n: p.detach().cpu() for n, p in madx.get_store(model).named_parameters()}
torch.save(state, out / f"rank{runtime.process_index}.pt")
