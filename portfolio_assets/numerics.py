"""The same floating-point results on every x86-64 machine: OpenBLAS's kernels and NumPy's SIMD
loops are pinned before NumPy loads.

OpenBLAS (bundled with the NumPy and SciPy wheels, built with DYNAMIC_ARCH) picks its kernels from
the CPU when it loads, and NumPy dispatches `exp`, `log`, reductions ... to AVX-512 loops where the
CPU has them. Both change the last bits of results. Measured on two 2-core AMD EPYC machines with
the same wheels: OpenBLAS chose SkylakeX kernels on one and Haswell kernels on the other, and the
`development` partition's correlation pairs, regime, weights, tournament and everything after them
came out different (so did their content hashes, which are Dagster's data versions and the
ledger's hashes). Turning NumPy's AVX-512 loops off changed the synthetic market's scans too.

`pin()` runs when the package is imported (`portfolio_assets/__init__.py`), before any of its
modules imports NumPy, and sets in `os.environ`, unless the variable is already set:

* `OPENBLAS_CORETYPE=Haswell` on an x86-64 CPU with AVX2 and FMA (every x86 server since 2015):
  the AVX2 kernels every such CPU runs, whatever newer ones it also has;
* `NPY_DISABLE_CPU_FEATURES` = NumPy's AVX-512 dispatch targets (`X86_V4 AVX512_ICL AVX512_SPR`,
  NumPy >= 2.4's names) on a CPU with AVX-512, so NumPy runs the AVX2 loops an AVX2-only CPU runs.

Processes started from here (Dagster's run and step processes, celery workers, the UI's code
server) inherit both. `PA_NUMERICS=native` skips the pin: large matrix products can be faster with
a CPU's own kernels, and results then depend on the CPU. ARM machines and other operating systems
are left native (`state()` says so). `state()` is what the benchmark prints and the tests assert.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

BLAS_CORE = "Haswell"
# NumPy >= 2.4's x86 dispatch targets above AVX2 (numpy._core._multiarray_umath.__cpu_dispatch__).
NUMPY_AVX512_TARGETS = "X86_V4 AVX512_ICL AVX512_SPR"
NATIVE_ENV = "PA_NUMERICS"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags from Linux's /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def numpy_at_least_2_4() -> bool:
    """Whether the installed NumPy (read from its metadata, not imported) is 2.4 or later."""
    try:
        major, minor = (int(p) for p in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (2, 4)


def settings(flags: frozenset[str], machine: str, numpy_2_4: bool) -> dict[str, str]:
    """The variables `pin` sets for a CPU with `flags` on `machine` (empty: nothing to pin)."""
    if machine.lower() not in ("x86_64", "amd64") or not {"avx2", "fma"} <= flags:
        return {}
    out = {"OPENBLAS_CORETYPE": BLAS_CORE}
    if numpy_2_4 and "avx512f" in flags:
        out["NPY_DISABLE_CPU_FEATURES"] = NUMPY_AVX512_TARGETS
    return out


def native_requested() -> bool:
    """Whether `PA_NUMERICS=native` asks for the CPU's own kernels."""
    return os.environ.get(NATIVE_ENV, "").strip().lower() == "native"


def pin() -> dict[str, str]:
    """Set the pinning variables that are not set yet (module docstring); what it set. Nothing when
    `PA_NUMERICS=native`. When NumPy is already loaded in this process, the pin reaches only the
    processes started from it (`state()` says so)."""
    global _NUMPY_BEFORE_PIN
    if native_requested():
        return {}
    _NUMPY_BEFORE_PIN = "numpy" in sys.modules
    wanted = settings(cpu_flags(), platform.machine(), numpy_at_least_2_4())
    applied = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(applied)
    return applied


_NUMPY_BEFORE_PIN = False


def state() -> str:
    """What this process computes with: `pinned (...)` or `native (...)`, and why."""
    if native_requested():
        return f"native ({NATIVE_ENV}=native: results depend on the CPU)"
    wanted = settings(cpu_flags(), platform.machine(), numpy_at_least_2_4())
    if not wanted:
        return f"native (nothing pinned on {platform.machine()} without AVX2+FMA flags: results depend on the CPU)"
    differ = {k: os.environ.get(k) for k, v in wanted.items() if os.environ.get(k) != v}
    if differ:
        return f"native (the environment sets {differ}: results depend on the CPU)"
    pinned = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
    if _NUMPY_BEFORE_PIN:
        return f"native in this process (NumPy was loaded before portfolio_assets; its children are pinned: {pinned})"
    return f"pinned ({pinned})"
