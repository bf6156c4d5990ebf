"""`numerics`: which kernels are pinned on which CPU, and that every process of ours runs pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portfolio_assets import numerics
from portfolio_assets_tests.conftest import PROJECT_ROOT

AVX512 = frozenset({"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512bw"})
AVX2 = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})


def test_settings_per_cpu():
    both = {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
    assert numerics.settings(AVX512, "x86_64", numpy_2_4=True) == both
    assert numerics.settings(AVX512, "AMD64", numpy_2_4=True) == both
    # An AVX2 machine already runs NumPy's AVX2 loops; an older NumPy has other target names.
    assert numerics.settings(AVX2, "x86_64", numpy_2_4=True) == {"OPENBLAS_CORETYPE": "Haswell"}
    assert numerics.settings(AVX512, "x86_64", numpy_2_4=False) == {"OPENBLAS_CORETYPE": "Haswell"}
    # No AVX2/FMA (or flags unknown), or not x86: nothing is forced on the CPU.
    assert numerics.settings(frozenset({"sse2", "avx"}), "x86_64", numpy_2_4=True) == {}
    assert numerics.settings(frozenset(), "x86_64", numpy_2_4=True) == {}
    assert numerics.settings(AVX512, "aarch64", numpy_2_4=True) == {}


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\n"
                    "flags\t\t: fpu sse2 avx2 fma\n")
    assert numerics.cpu_flags(info) == {"fpu", "sse2", "avx2", "fma"}
    assert numerics.cpu_flags(tmp_path / "missing") == frozenset()


def _child(code: str, **env: str) -> dict:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", numerics.NATIVE_ENV)}
    proc = subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


PROBE = """
import json, os
{first}
from portfolio_assets import numerics
print(json.dumps({{"state": numerics.state(), "blas": os.environ.get("OPENBLAS_CORETYPE"),
                   "npy": os.environ.get("NPY_DISABLE_CPU_FEATURES")}}))
"""


def test_a_fresh_process_is_pinned_unless_told_native():
    wanted = numerics.settings(numerics.cpu_flags(), os.uname().machine, numerics.numpy_at_least_2_4())
    got = _child(PROBE.format(first="import portfolio_assets"))
    assert (got["blas"], got["npy"]) == (wanted.get("OPENBLAS_CORETYPE"), wanted.get("NPY_DISABLE_CPU_FEATURES"))
    if wanted:
        assert got["state"].startswith("pinned (") and "OPENBLAS_CORETYPE=Haswell" in got["state"], got
    native = _child(PROBE.format(first="import portfolio_assets"), PA_NUMERICS="native")
    assert native == {"state": "native (PA_NUMERICS=native: results depend on the CPU)", "blas": None, "npy": None}
    # A value the user set is kept, and reported as what it is.
    if wanted:
        own = _child(PROBE.format(first="import portfolio_assets"), OPENBLAS_CORETYPE="SkylakeX")
        assert own["blas"] == "SkylakeX" and own["state"].startswith("native (the environment sets "), own


def test_numpy_loaded_first_is_reported():
    if not numerics.settings(numerics.cpu_flags(), os.uname().machine, numerics.numpy_at_least_2_4()):
        pytest.skip("this CPU gets no pin")
    got = _child(PROBE.format(first="import numpy\nimport portfolio_assets"))
    assert got["state"].startswith("native in this process (NumPy was loaded before portfolio_assets"), got


def test_this_test_process_runs_pinned():
    """The suite's package imports portfolio_assets before anything loads NumPy (its __init__)."""
    if not numerics.settings(numerics.cpu_flags(), os.uname().machine, numerics.numpy_at_least_2_4()):
        pytest.skip("this CPU gets no pin")
    assert numerics.state().startswith("pinned ("), numerics.state()
