"""Load a base model (with the head a task needs, or its MLM head) and its tokenizer, and say what
the checkpoint lacked in the command line's terms.

transformers prints a load report (``classifier.weight | MISSING``) whenever a head is new. Here
that is the normal case (a task head is trained by ``train-task`` or loaded from the task adapter
right after), so the report is kept off the screen and the commands decide: a missing *head* is
reported by whoever needs it (``evaluate`` refuses to score a head that was never trained), and
missing *encoder* weights are an error (the checkpoint is not the model it claims to be)."""

from __future__ import annotations

import contextlib
import os
import sys


def quiet_third_party() -> None:
    """deepspeed, which transformers imports whenever it is installed, warns "Setting accelerator to CPU. If you
    have GPU or other accelerator, we were unable to detect it" on every machine without CUDA: nothing is wrong
    there, so it is told that CPU is meant (a DS_ACCELERATOR the user set is kept)."""
    if "DS_ACCELERATOR" in os.environ or "deepspeed" in sys.modules:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


@contextlib.contextmanager
def quiet_loading():
    """transformers' load report and weight-loading bars off the screen while loading."""
    import transformers

    logging = transformers.utils.logging
    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _split_missing(model, missing: set[str]) -> tuple[list[str], list[str]]:
    """(head keys, encoder keys) among the keys a checkpoint lacked."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    encoder = sorted(k for k in missing if k.startswith(prefix))
    return sorted(set(missing) - set(encoder)), encoder


def _check_encoder(name_or_path: str, encoder_missing: list[str]) -> None:
    if encoder_missing:
        shown = ", ".join(encoder_missing[:3]) + (f" and {len(encoder_missing) - 3} more" if len(encoder_missing) > 3 else "")
        raise ValueError(f"{name_or_path}: the checkpoint lacks encoder weights ({shown}); they would be random")


def load_task_model(name_or_path: str, task: str):
    """(model, tokenizer, head keys the checkpoint lacked: an empty list when its head was trained)."""
    quiet_third_party()
    from transformers import AutoTokenizer

    from madx.tasks.registry import get_task

    with quiet_loading():
        model, info = get_task(task).load_model(name_or_path, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    head_missing, encoder_missing = _split_missing(model, set(info["missing_keys"]))
    _check_encoder(name_or_path, encoder_missing)
    return model, tokenizer, head_missing


def load_mlm_model(name_or_path: str):
    """(model with its MLM head, tokenizer); a checkpoint without an MLM head is an error: adapters trained
    against a random head learn nothing useful."""
    quiet_third_party()
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    with quiet_loading():
        model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    head_missing, encoder_missing = _split_missing(model, set(info["missing_keys"]))
    _check_encoder(name_or_path, encoder_missing)
    if head_missing:
        raise ValueError(f"{name_or_path}: the checkpoint has no MLM head ({', '.join(head_missing[:3])} missing), so "
                         "masked-LM training would start from a random head; fit one first: madx models train-mlm-head")
    return model, tokenizer
