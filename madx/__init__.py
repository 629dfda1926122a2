"""madx: MAD-X adapters (language, task, invertible) for Hugging Face transformers encoders.

    model = AutoModelForTokenClassification.from_pretrained("xlm-roberta-base", num_labels=7, id2label=...)
    madx.load_adapter(model, "adapters/en/adapter")  # language + invertible adapter (madx train-lang --out adapters/en)
    madx.load_adapter(model, "adapters/qu/adapter")
    madx.add_task_adapter(model, "ner")              # with its own copy of the model's classifier
    print(madx.train_adapter(model, madx.Stack("en", "ner")))  # only "ner" and its head train
    ...
    with madx.active(model, madx.Stack("qu", "ner")):  # zero-shot transfer to Quechua
        predictions = model(**batch).logits

The public names below are imported on first use (PEP 562), so ``import madx.<submodule>``,
and with it ``madx --help``, does not pay for torch and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from madx.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Stack": "madx.compose",
    "AdapterConfig": "madx.adapters.config",
    "TrainConfig": "madx.train",
    **{name: "madx.inject" for name in (
        "active", "add_language_adapter", "add_task_adapter", "adapter_names", "attach", "check_trainable", "delete_adapter",
        "detach", "get_active", "get_store", "is_attached", "reset_task_heads", "set_active", "set_trainable", "task_heads",
        "print_trainable_parameters", "train_adapter", "trainable_parameters", "TrainableParameters")},
    "load_adapter": "madx.io",
    "save_adapter": "madx.io",
    "export_adapterhub": "madx.adapterhub",
    "import_adapterhub": "madx.adapterhub",
    "VARIANTS": "madx.variants",
    "Variant": "madx.variants",
    "get_variant": "madx.variants",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from madx.adapterhub import export_adapterhub, import_adapterhub
    from madx.adapters.config import AdapterConfig
    from madx.compose import Stack
    from madx.inject import (TrainableParameters, active, add_language_adapter, add_task_adapter, adapter_names, attach,
                             check_trainable, delete_adapter, detach, get_active, get_store, is_attached,
                             print_trainable_parameters, reset_task_heads, set_active, set_trainable, task_heads,
                             train_adapter, trainable_parameters)
    from madx.io import load_adapter, save_adapter
    from madx.train import TrainConfig
    from madx.variants import VARIANTS, Variant, get_variant
