"""One rank of tests/inject/test_zero3.py (run by torchrun): an adapted model under DeepSpeed ZeRO-3, every
parameter partitioned (persistence threshold 0), against the same model unpartitioned."""

import copy
import json
import os
import sys

import deepspeed
import torch
from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

import madx
from madx import AdapterConfig, Stack

SETUPS = {"LA+INV,TA": (True, Stack("en", "ner")), "LA,TA adapterhub": (False, Stack("en", "ner", mode="adapterhub")),
          "TA": (False, Stack("ner"))}


def main(out_path: str, setup_name: str) -> None:
    invertible, stack = SETUPS[setup_name]
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=40, num_labels=3)
    model = XLMRobertaForTokenClassification(config).eval()
    if "en" in stack.names:
        madx.add_language_adapter(model, "en", AdapterConfig(), invertible=invertible)
    madx.add_task_adapter(model, "ner", AdapterConfig(task_reduction_factor=4))
    madx.train_adapter(model, stack)
    ids = torch.randint(5, 100, (2, 10), generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 3, (2, 10), generator=torch.Generator().manual_seed(2))
    reference = copy.deepcopy(model)
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
    base_before = {n: p.detach().clone() for n, p in reference.named_parameters() if not p.requires_grad}
    ds_config = {"train_micro_batch_size_per_gpu": 2, "gradient_clipping": 0.0,
                 "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
                 "optimizer": {"type": "AdamW", "params": {"lr": 1e-2, "torch_adam": True}}}
    engine, *_ = deepspeed.initialize(model=model, model_parameters=[p for p in model.parameters() if p.requires_grad],
                                      config=ds_config)
    probe = next(p for n, p in engine.module.named_parameters() if ".madx_adapters." in n)
    partitioned = tuple(probe.data.shape) != tuple(probe.ds_shape)
    engine.eval()
    with torch.no_grad():
        got = engine(input_ids=ids).logits
    engine.train()
    loss = engine(input_ids=ids, labels=labels).loss
    engine.backward(loss)
    engine.step()
    changed, unchanged = [], []
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        for name, parameter in engine.module.named_parameters():
            if name in base_before:
                unchanged.append(torch.equal(parameter.detach(), base_before[name]))
            else:
                changed.append(name)
    result = {"partitioned": partitioned, "max_diff": float((got - expected).abs().max()), "loss": float(loss),
              "base_unchanged": all(unchanged), "trained": len(changed)}
    if int(os.environ["RANK"]) == 0:
        with open(out_path, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
