"""Load a base model with the head a task needs, plus its tokenizer."""

from __future__ import annotations


def load_task_model(name_or_path: str, task: str):
    from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification, AutoTokenizer

    from madx.data.wikiann import NER_TAGS

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if task == "ner":
        model = AutoModelForTokenClassification.from_pretrained(
            name_or_path, num_labels=len(NER_TAGS), id2label=dict(enumerate(NER_TAGS)),
            label2id={t: i for i, t in enumerate(NER_TAGS)})
    else:
        model = AutoModelForQuestionAnswering.from_pretrained(name_or_path)
    return model, tokenizer
