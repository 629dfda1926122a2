"""When a job's failure is the worker's fault, not the job's: stop the worker, not the run.

After a sticky CUDA error (a device-side assert, an illegal memory access, an uncorrectable ECC
error, a launch failure) the process's CUDA context is poisoned: every later CUDA call fails in
milliseconds, whatever the job. A worker that went on would mark every ready job failed and block
their dependents for the run (tried before this module: the smoke suite with every evaluation
raising a device-side assert, one worker marked 87 jobs failed). The same holds for an aborted
NCCL communicator. So:

* a sticky error → the job in hand is released, not marked failed (the fault is the device's,
  another worker or a rerun runs it), the worker stops claiming and exits non-zero with one
  message naming the cause (``WorkerUnhealthy``; the CLI prints it and exits 2);
* ``max_consecutive`` failures in a row on one worker, whatever their text → the worker stops the
  same way (those failures stay recorded: they may be the jobs' own). A healthy worker fails
  jobs now and then, not every job it touches.

``FailureGuard`` is the whole policy, kept out of the worker loop: the loop calls ``check`` on an
exception before recording it, and ``succeeded`` / ``failed`` after each job.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from bench.devices import DeviceError

ENV_MAX_CONSECUTIVE = "MADX_MAX_CONSECUTIVE_FAILURES"
MAX_CONSECUTIVE = 5  # failures in a row on one worker that stop it

# Texts of errors after which this process's CUDA context (or its NCCL communicator) is unusable.
# Sticky CUDA errors as the CUDA runtime spells them (cudaGetErrorString), NCCL's own, and the
# watchdog's. "CUDA out of memory" is not among them: the worker frees its cache and goes on.
STICKY = (
    ("device-side assert", "device-side assert triggered"),
    ("illegal memory access", "an illegal memory access was encountered"),
    ("illegal instruction", "an illegal instruction was encountered"),
    ("misaligned address", "misaligned address"),
    ("uncorrectable ECC error", "uncorrectable ECC error encountered"),
    ("launch failure", "unspecified launch failure"),
    ("launch timeout", "the launch timed out and was terminated"),
    ("GPU lost", "GPU has fallen off the bus"),
    ("device unavailable", "CUDA-capable device(s) is/are busy or unavailable"),
    ("NCCL abort", "NCCL communicator was aborted"),
    ("NCCL error", "ncclRemoteError"),
    ("NCCL error", "ncclSystemError"),
    ("NCCL error", "ncclInternalError"),
    ("NCCL error", "ncclUnhandledCudaError"),
    ("NCCL timeout", "Watchdog caught collective operation timeout"),
)
_STICKY = re.compile("|".join(re.escape(text) for _, text in STICKY), re.IGNORECASE)


class WorkerUnhealthy(DeviceError):
    """This worker must stop claiming jobs: its device is poisoned or every job it touches fails."""


def sticky_cause(error: BaseException) -> str | None:
    """The name of the sticky device error in ``error`` or its causes (``raise ... from``, an
    exception raised while handling another, a ZeRO group's stderr in the message), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        match = _STICKY.search(str(error))
        if match:
            found = match.group(0).lower()
            return next(name for name, text in STICKY if text.lower() == found)
        error = error.__cause__ or error.__context__
    return None


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def max_consecutive_from_env(environ=None) -> int:
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_MAX_CONSECUTIVE)
    if value is None:
        return MAX_CONSECUTIVE
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise ValueError(f"${ENV_MAX_CONSECUTIVE} = {value!r}: want a positive whole number of failures")
    return k


@dataclass
class FailureGuard:
    """Per worker: is this failure the device's, and has this worker failed too often in a row?"""

    worker: str
    device: str
    max_consecutive: int = MAX_CONSECUTIVE
    streak: int = 0
    last: str = ""

    def check(self, job_name: str, error: BaseException) -> None:
        """Call before recording ``error`` as ``job_name``'s failure: raises WorkerUnhealthy (chained
        to ``error``) when the failure is a sticky device error, so that it is not recorded."""
        cause = sticky_cause(error)
        if cause is not None:
            raise WorkerUnhealthy(
                f"worker {self.worker} stops: {cause} on {self.device} while running {job_name} "
                f"({_first_line(error)}); this process's device context cannot run anything more, so the job "
                f"was released, not marked failed; other workers go on, and a rerun on this node starts afresh "
                f"(check the GPU with nvidia-smi if it happens again)") from error

    def succeeded(self) -> None:
        self.streak, self.last = 0, ""

    def failed(self, job_name: str, error: BaseException) -> None:
        """Count a recorded failure; raises WorkerUnhealthy at ``max_consecutive`` in a row."""
        self.streak += 1
        self.last = f"{job_name}: {_first_line(error)}"
        if self.streak >= self.max_consecutive:
            raise WorkerUnhealthy(
                f"worker {self.worker} stops: {self.streak} jobs in a row failed on {self.device} (last: {self.last}); "
                f"a fault that fails every job should not fail the whole run. Their errors are recorded "
                f"(madx bench status); fix the cause and rerun: finished jobs are kept "
                f"(${ENV_MAX_CONSECUTIVE} sets the limit, now {self.max_consecutive})")
