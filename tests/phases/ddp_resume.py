"""Run under ``accelerate launch --num_processes 2``: train a language adapter data-parallel three times
(uninterrupted; stopped by SIGTERM at step 3 with a checkpoint; resumed from it) and write this rank's
adapter weights of the first and last runs, and the first batch's masks, to OUT (tests/phases/test_ddp.py)."""

import os
import signal
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


class Stopped(BaseException):
    pass


def stop(signum, frame):
    raise Stopped(signum)


out = Path(sys.argv[1])
runtime = Runtime.distributed("no")
rank = runtime.process_index
tokenizer = build_tiny_tokenizer(synthetic_corpus("qu", 200), vocab_size=300)
text = out / "qu.txt"
if runtime.is_main_process:
    synthetic.write_text(text, "qu", 200)
runtime.accelerator.wait_for_everyone()
config = TrainConfig(learning_rate=5e-3, batch_size=4, max_steps=6, seed=1, log_every=1, eval_every=2)
signal.signal(signal.SIGTERM, stop)


def run(checkpoint_dir=None, stop_at=None):
    model = tiny_model("xlm-roberta", "mlm", vocab_size=len(tokenizer), max_position_embeddings=40, hidden_dropout_prob=0.1)

    def progress(record):
        if record["step"] == stop_at and rank == 1:  # one rank's signal stops both at the same step
            os.kill(os.getpid(), signal.SIGTERM)

    train_language_adapter(model, "qu", [text], tokenizer, config, runtime, data=MLMData(max_seq_length=24),
                           progress=progress, checkpoint_dir=checkpoint_dir)
    return {n: p.detach().cpu() for n, p in madx.get_store(model).named_parameters()}


reference = run()
try:
    run(out / "checkpoint", stop_at=3)
    outcome = "not stopped"
except Stopped:
    outcome = "stopped"
except Exception as error:  # the rank that got no signal
    outcome = type(error).__name__
resumed = run(out / "checkpoint")
torch.save({"reference": reference, "resumed": resumed, "outcome": outcome}, out / f"rank{rank}.pt")
