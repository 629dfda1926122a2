"""Print versions, the compute device, which kernel implementations are available here and what
``impl="auto"`` runs (``--probe``: time the implementations on this CUDA device now)."""

from __future__ import annotations

import json

HELP = "versions, device and available kernel implementations"

def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--probe", action="store_true",
                        help="on CUDA, run auto's timing probes now at MAD-X's shapes (XLM-R base, bf16, "
                             "64 x 256 tokens; a few seconds) and show what auto picks")


def run(args) -> int:
    from madx.environment import collect

    info = collect(probe=args.probe)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"python {info['python']} on {info['platform']}")
    for package, version in info["versions"].items():
        print(f"  {package:<14} {version or 'not installed'}")
    print("device: " + ", ".join(f"{k}={v}" for k, v in info["device"].items()))
    print("kernel implementations:")
    for name, status in info["kernels"].items():
        print(f"  {name:<14} {status}")
    print("impl='auto' per op:")
    for op, line in info["kernel_auto"].items():
        print(f"  {op:<22} {line}")
    return 0
