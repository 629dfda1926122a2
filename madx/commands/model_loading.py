"""Load a base model with the head a task needs, plus its tokenizer."""

from __future__ import annotations


def load_task_model(name_or_path: str, task: str):
    from transformers import AutoTokenizer

    from madx.tasks.registry import get_task

    return get_task(task).load_model(name_or_path), AutoTokenizer.from_pretrained(name_or_path)
