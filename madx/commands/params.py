"""Print the parameters each MAD-X variant adds to a base model (the paper's Table 4).

Built-in architectures need no download: xlm-roberta-base, xlm-roberta-large,
bert-base-multilingual-cased. Anything else is read with AutoConfig (a local model directory,
or a hub name when online).
"""

from __future__ import annotations

import json

HELP = "added parameters per variant (the paper's Table 4)"


def add_arguments(parser) -> None:
    parser.add_argument("--arch", default="xlm-roberta-base", help="preset name, model directory or hub name")
    parser.add_argument("--language-reduction-factor", type=int, default=2)
    parser.add_argument("--invertible-reduction-factor", type=int, default=2)
    parser.add_argument("--task-reduction-factor", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from madx.params import AdapterDims, format_table, parameter_table, table_as_json

    dims = AdapterDims(args.language_reduction_factor, args.invertible_reduction_factor, args.task_reduction_factor)
    rows = parameter_table(args.arch, dims)
    if args.json:
        print(json.dumps({"arch": args.arch, "dims": dims.__dict__, "rows": table_as_json(rows)}, indent=2))
    else:
        print(format_table(args.arch, rows))
    return 0
