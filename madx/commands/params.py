"""Print the parameters each MAD-X variant adds to a base model (the paper's Table 4).

Built-in architectures need no download: xlm-roberta-base, xlm-roberta-large,
bert-base-multilingual-cased. Anything else is read with AutoConfig (a local model directory,
or a hub name when online).
"""

from __future__ import annotations

import json
from dataclasses import fields

from madx.adapters.config import AdapterConfig
from madx.commands.common import check_model

HELP = "added parameters per variant (the paper's Table 4)"
# madx.params.ARCH_PRESETS' names, here so that the parser does not import torch (a test checks they agree)
PRESETS = ("xlm-roberta-base", "xlm-roberta-large", "bert-base-multilingual-cased")


def add_arguments(parser) -> None:
    parser.add_argument("--arch", default="xlm-roberta-base",
                        help=f"a built-in preset ({', '.join(PRESETS)}), a model folder or a hub name")
    for f in fields(AdapterConfig):
        flag, text = f"--{f.name.replace('_', '-')}", f.metadata["help"]
        if isinstance(f.default, tuple):  # leave_out: layer indices
            parser.add_argument(flag, type=int, nargs="*", default=list(f.default), metavar="LAYER", help=f"{text} (default: none)")
        elif isinstance(f.default, str):
            parser.add_argument(flag, default=f.default, help=text)
        else:
            parser.add_argument(flag, type=int, default=f.default, help=text)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    check_model("--arch", args.arch, presets=PRESETS)

    from madx.params import format_table, parameter_table, table_as_json

    values = {f.name: getattr(args, f.name) for f in fields(AdapterConfig)}
    config = AdapterConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    rows = parameter_table(args.arch, config)
    if args.json:
        print(json.dumps({"arch": args.arch, "dims": config.to_dict(), "rows": table_as_json(rows)}, indent=2))
    else:
        print(format_table(args.arch, rows))
    return 0
