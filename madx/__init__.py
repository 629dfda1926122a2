"""madx: MAD-X adapters (language, task, invertible) for Hugging Face transformers encoders.

    model = AutoModelForTokenClassification.from_pretrained("xlm-roberta-base", num_labels=7)
    madx.load_adapter(model, "adapters/en")          # language + invertible adapter (MLM-trained)
    madx.load_adapter(model, "adapters/qu")
    madx.add_task_adapter(model, "ner")
    madx.set_active(model, madx.Stack("en", "ner"))   # train the task adapter on English
    ...
    with madx.active(model, madx.Stack("qu", "ner")):  # zero-shot transfer to Quechua
        predictions = model(**batch).logits
"""

__version__ = "0.1.0"

from madx.compose import Stack
from madx.inject import (
    active,
    add_language_adapter,
    add_task_adapter,
    adapter_names,
    attach,
    delete_adapter,
    detach,
    get_active,
    get_store,
    is_attached,
    reset_task_heads,
    set_active,
    set_trainable,
    task_heads,
)
from madx.io import load_adapter, save_adapter
from madx.adapterhub import export_adapterhub, import_adapterhub
from madx.variants import VARIANTS, Variant, get_variant

__all__ = [
    "VARIANTS",
    "Stack",
    "Variant",
    "active",
    "add_language_adapter",
    "add_task_adapter",
    "adapter_names",
    "attach",
    "delete_adapter",
    "detach",
    "export_adapterhub",
    "get_active",
    "get_store",
    "is_attached",
    "get_variant",
    "import_adapterhub",
    "load_adapter",
    "save_adapter",
    "reset_task_heads",
    "set_active",
    "set_trainable",
    "task_heads",
]
