"""`both_ways`: a test that compares the compiled kernels' path with the NumPy path runs twice,
with the kernels on (skipped where they were not built) and off, each inside `kernels.use`:

    @both_ways
    def test_x(kernels_on):
        with kernels.use(kernels_on):
            ...

`every_test_both_ways`: the same for every test of a module that imports it (an autouse
fixture: `from tests.kernels import every_test_both_ways  # noqa: F401`).
"""

from __future__ import annotations

import pytest

from collector import kernels

both_ways = pytest.mark.parametrize("kernels_on", [
    pytest.param(True, id="kernels-on",
                 marks=pytest.mark.skipif(not kernels.available(), reason="the kernels were not built")),
    pytest.param(False, id="kernels-off"),
])


@pytest.fixture(autouse=True, params=[True, False], ids=["kernels-on", "kernels-off"])
def every_test_both_ways(request):
    if request.param and not kernels.available():
        pytest.skip("the kernels were not built")
    with kernels.use(request.param):
        yield request.param
