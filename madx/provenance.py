"""What produced a result: code revision, package versions, hardware. Stored in every result."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

from madx.environment import collect


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def provenance() -> dict:
    info = collect()
    return {"git_revision": git_revision(), "versions": info["versions"], "hardware": info["device"],
            "python": info["python"], "platform": info["platform"], "kernel_auto": info["kernel_auto"]}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
