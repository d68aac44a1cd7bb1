"""collector.kernels: the compiled kernels are there where the install could build them.

Every kernel test skips when they are missing (a machine without a C compiler still runs the
NumPy paths, and the rest of the suite); this one fails instead, so that a broken build on a
machine that has a compiler does not pass unnoticed. `IMFLOW_KERNELS=0` turns them off on
purpose (then the suite checks the NumPy paths alone)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from collector import kernels


@pytest.mark.skipif(os.environ.get("IMFLOW_KERNELS") == "0", reason="kernels turned off (IMFLOW_KERNELS=0)")
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here")
def test_the_kernels_are_built():
    assert kernels.compiled is not None, kernels.status()
    assert kernels.status() == "compiled kernels"


def test_the_switch_turns_them_off():
    out = subprocess.run([sys.executable, "-m", "collector", "--version"], capture_output=True, text=True,
                         env={**os.environ, "IMFLOW_KERNELS": "0"}, check=True).stdout
    assert "NumPy only: IMFLOW_KERNELS=0" in out
