"""madx_seqeval: entity-level NER F1 (conlleval semantics) as an offline `evaluate` metric.

A thin wrapper: all logic and every edge-case decision live in `madx.metrics.ner.ner_scores`.
"""

import datasets
import evaluate

from madx.metrics.ner import ner_scores

_DESCRIPTION = """\
Entity-level micro precision, recall and F1 for sequence labelling with conlleval semantics (seqeval's
default mode: an I- tag after O or another type starts an entity), token accuracy and per-type scores.
Unlike the hub's `seqeval` metric, this needs no network, returns one flat result layout, treats "no gold
and no predicted entity" as a perfect score (1.0), and raises on length mismatches and malformed tags.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of predicted tag sequences, one list of word-level tag strings per sentence.
    references: list of gold tag sequences, same shape.
Returns:
    precision, recall, f1, accuracy: floats in [0, 1];
    n_sentences, n_tokens, n_gold_entities, n_pred_entities, n_correct_entities: ints;
    per_type: {type: {precision, recall, f1, support}}.
Examples:
    >>> metric = evaluate.load(madx.metrics.evaluate_module_path("madx_seqeval"))
    >>> metric.compute(predictions=[["B-PER", "O"]], references=[["B-PER", "O"]])["f1"]
    1.0
"""

_CITATION = """\
@inproceedings{nakayama2018seqeval, title={seqeval: A Python framework for sequence labeling evaluation},
  author={Hiroki Nakayama}, year={2018}, url={https://github.com/chakki-works/seqeval}}
@inproceedings{tjong-kim-sang-de-meulder-2003-introduction, title={Introduction to the CoNLL-2003 Shared Task},
  author={Tjong Kim Sang, Erik F. and De Meulder, Fien}, booktitle={CoNLL}, year={2003}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MadxSeqeval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.List(datasets.Value("string")),
                    "references": datasets.List(datasets.Value("string")),
                }
            ),
            codebase_urls=["https://github.com/chakki-works/seqeval"],
        )

    def _compute(self, predictions, references):
        return ner_scores(predictions=predictions, references=references)
