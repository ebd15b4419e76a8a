"""What the CPU can do and who uses its threads: whether it does bf16 in hardware, and threads handed back between
jobs that share it (notebook 01: the pocket HuBERT takes the pocket CLIP's thread once that training ends).
No speechclip imports, so every module can use it.
"""
from __future__ import annotations

import torch

__all__ = ["cpu_has_native_bf16", "reclaim_threads_after", "reclaim_threads"]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX on x86), as oneDNN reports it."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or one that lacks the query
        return False

_THREADS_HELD: list = []  # (background training, torch threads to take back when it ends)


def reclaim_threads_after(job, threads: int) -> None:
    """Let this process go back to `threads` torch threads as soon as `job` (anything with a `running` flag, e.g. a
    `pocket.BackgroundTraining`) ends; checked by `reclaim_threads`.

    Notebook 01 trains the pocket HuBERT in the kernel with one thread while the pocket CLIP trains in a second
    process with the other; the CLIP ends first, and from then on the HuBERT's steps run on both threads
    (1.6x faster in fp32 on the 2-core machine) instead of leaving a core idle.
    """
    if job.running:
        _THREADS_HELD.append((job, threads))


def reclaim_threads() -> None:
    """Take back the threads of every registered background training that has ended (cheap: one poll each)."""
    for held in list(_THREADS_HELD):
        job, threads = held
        if not job.running:
            _THREADS_HELD.remove(held)
            if threads > torch.get_num_threads():
                torch.set_num_threads(threads)
