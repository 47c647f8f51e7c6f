"""CPU kernels pinned so that numerics reproduce across processors.

PyTorch's CPU kernels (ATen), oneDNN (convolutions) and MKL (matrix products) each pick code
paths by the processor's instruction set — AVX-512 on this machine, AVX2 on many others — and
those paths round differently, so the same seed gave different metrics on two machines of the
same kind. The pins cap all three at AVX2, which every x86-64 server of the last decade has.
They act only if set before the first tensor operation of a process: every entry point calls
`components.cluster.apply_env()` first, Ray's workers inherit the variables, and each training
session calls `pin_kernels()` again (a no-op when set). What was measured: BENCHMARKS.md §
Reproducibility.
"""

from __future__ import annotations

import os

# setdefault: a user who exports other values (e.g. ATEN_CPU_CAPABILITY=avx512 for speed) keeps
# them; the model dir records the capability used.
KERNEL_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def pin_kernels() -> None:
    """Put KERNEL_PINS in the environment (too late for kernels that already ran in this process)."""
    for key, value in KERNEL_PINS.items():
        os.environ.setdefault(key, value)
