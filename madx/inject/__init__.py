from madx.inject.model import (
    add_adapter,
    add_language_adapter,
    add_task_adapter,
    adapter_names,
    attach,
    delete_adapter,
    detach,
    get_active,
    get_store,
    set_active,
    set_trainable,
    task_heads,
)
from madx.inject.spec import ARCHITECTURES, ArchitectureSpec, spec_for_model_type

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "add_adapter",
    "add_language_adapter",
    "add_task_adapter",
    "adapter_names",
    "attach",
    "delete_adapter",
    "detach",
    "get_active",
    "get_store",
    "set_active",
    "set_trainable",
    "spec_for_model_type",
    "task_heads",
]
