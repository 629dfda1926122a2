"""Print the parameters each MAD-X variant adds to a base model (the paper's Table 4).

Built-in architectures need no download: xlm-roberta-base, xlm-roberta-large,
bert-base-multilingual-cased. Anything else is read with AutoConfig (a local model directory,
or a hub name when online).
"""

from __future__ import annotations

import json
from dataclasses import fields

from madx.adapters.config import AdapterConfig

HELP = "added parameters per variant (the paper's Table 4)"


def add_arguments(parser) -> None:
    parser.add_argument("--arch", default="xlm-roberta-base", help="preset name, model directory or hub name")
    for f in fields(AdapterConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=int, default=f.default, help=f.metadata["help"])
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from madx.params import format_table, parameter_table, table_as_json

    config = AdapterConfig(**{f.name: getattr(args, f.name) for f in fields(AdapterConfig)})
    rows = parameter_table(args.arch, config)
    if args.json:
        print(json.dumps({"arch": args.arch, "dims": config.to_dict(), "rows": table_as_json(rows)}, indent=2))
    else:
        print(format_table(args.arch, rows))
    return 0
