from madx.inject.context import active
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
    is_attached,
    reset_task_heads,
    set_active,
    task_heads,
)
from madx.inject.trainable import TrainableParameters, check_trainable, set_trainable, train_adapter, trainable_parameters
from madx.inject.spec import ARCHITECTURES, ArchitectureSpec, spec_for_model_type

__all__ = [
    "active",
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
    "is_attached",
    "reset_task_heads",
    "set_active",
    "set_trainable",
    "spec_for_model_type",
    "task_heads",
    "TrainableParameters",
    "check_trainable",
    "train_adapter",
    "trainable_parameters",
]
