"""collector.kernels: the compiled kernels are there where the install could build them.

Every kernel test skips when they are missing (a machine without a C compiler still runs the
NumPy paths, and the rest of the suite); this one fails instead, so that a broken build on a
machine that has a compiler does not pass unnoticed, also in CI's second run with
`IMFLOW_KERNELS=0` (which turns them off on purpose, so that every test checks the NumPy paths;
the tests that compare both paths still switch them on with `kernels.use`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from collector import kernels


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here")
def test_the_kernels_are_built():
    assert kernels.available(), kernels.status()
    with kernels.use(True) as on:
        assert on and kernels.status() == "compiled kernels"


def test_use_switches_and_restores():
    before = kernels.compiled
    with kernels.use(False) as on:
        assert not on and kernels.compiled is None
        assert kernels.status().startswith("NumPy only")
        with kernels.use(True) as inner:
            assert inner == kernels.available()
            assert (kernels.compiled is not None) == kernels.available()
        assert kernels.compiled is None
    assert kernels.compiled is before


def test_the_switch_turns_them_off():
    out = subprocess.run([sys.executable, "-m", "collector", "--version"], capture_output=True, text=True,
                         env={**os.environ, "IMFLOW_KERNELS": "0"}, check=True).stdout
    assert "NumPy only: IMFLOW_KERNELS=0" in out


@pytest.mark.skipif(not kernels.available(), reason="kernels not built")
def test_the_switch_knows_every_function_the_module_has():
    """`kernels.FUNCTIONS` is what makes a module built from an older tree count as not built;
    a kernel added to the method table and not listed there would slip past that check."""
    assert set(kernels.FUNCTIONS) == {n for n in dir(kernels.built) if not n.startswith("_")}
