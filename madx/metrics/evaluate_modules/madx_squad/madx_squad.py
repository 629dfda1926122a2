"""madx_squad: the official SQuAD v1.1 exact match / F1 as an offline `evaluate` metric.

A thin wrapper: all logic lives in `madx.metrics.squad.squad_scores`. Inputs follow the hub's `squad`
metric (what transformers' run_qa post-processing produces), so it is a drop-in replacement; references
may also give `answers` as a plain list of strings.
"""

import datasets
import evaluate

from madx.metrics.squad import squad_scores

_DESCRIPTION = """\
SQuAD v1.1 exact match and token F1 (official evaluate-v1.1.py normalisation: lower-case, drop punctuation,
drop English articles a/an/the, collapse whitespace), best over the gold answers, averaged over all gold
questions, in percent (0-100). XQuAD is scored with the same script.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of {"id": str, "prediction_text": str}.
    references: list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}
        or {"id": str, "answers": [str, ...]}.
Returns:
    exact_match, f1: floats in [0, 100]; n_questions, n_missing: ints; missing_ids: list of str.
    A reference id without prediction scores 0; a prediction id without reference is an error.
Examples:
    >>> metric = evaluate.load(madx.metrics.evaluate_module_path("madx_squad"))
    >>> metric.compute(predictions=[{"id": "q1", "prediction_text": "the Broncos"}],
    ...                references=[{"id": "q1", "answers": ["Broncos"]}])["exact_match"]
    100.0
"""

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad, title={SQuAD: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy}, booktitle={EMNLP}, year={2016}}
"""

_STRING = datasets.Value("string")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MadxSquad(evaluate.Metric):
    def _info(self):
        predictions = {"id": _STRING, "prediction_text": _STRING}
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # evaluate picks the first format the first example encodes with. The hub format must come
            # first: a dict of answers would otherwise be read as the list of its keys by the second one.
            # (Hub format without "answer_start" is not accepted; use the plain list form instead.)
            features=[
                datasets.Features(
                    {
                        "predictions": predictions,
                        "references": {
                            "id": _STRING,
                            "answers": {"text": datasets.List(_STRING), "answer_start": datasets.List(datasets.Value("int32"))},
                        },
                    }
                ),
                datasets.Features(
                    {"predictions": predictions, "references": {"id": _STRING, "answers": datasets.List(_STRING)}}
                ),
            ],
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references):
        pred_by_id = {}
        for p in predictions:
            if p["id"] in pred_by_id and pred_by_id[p["id"]] != p["prediction_text"]:
                raise ValueError(f"two different predictions for question {p['id']!r}")
            pred_by_id[p["id"]] = p["prediction_text"]
        gold_by_id = {}
        for r in references:
            answers = r["answers"]
            texts = list(answers["text"]) if isinstance(answers, dict) else list(answers)
            if r["id"] in gold_by_id and gold_by_id[r["id"]] != texts:
                raise ValueError(f"two different gold answer lists for question {r['id']!r}")
            gold_by_id[r["id"]] = texts
        return squad_scores(predictions=pred_by_id, references=gold_by_id)
