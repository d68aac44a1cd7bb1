"""collector.netflow.batch: the views of one value that stand for columns nobody fills or reads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.netflow.batch import ADDR, COLUMNS, FlowBatch, repeated


@given(st.integers(0, 5000), st.sampled_from(sorted(set(COLUMNS.values()), key=str)), st.integers(0, 2**32 - 1))
def test_repeated_reads_as_the_value_in_every_row(n, dtype, value):
    item = np.zeros(1, dtype)
    if dtype == ADDR:
        item["lo"] = value
    else:
        item[0] = value % (1 << (8 * dtype.itemsize)) if dtype.kind in "ui" else value
    view = repeated(item, n)
    assert view.shape == (n,) and view.dtype == dtype and view.strides == (0,)
    assert view.tobytes() == item.tobytes() * n  # what np.broadcast_to's view reads, row by row
    with pytest.raises(ValueError):
        view[:1] = item  # read-only, as the columns it stands for are to their readers


def test_only_keeps_the_named_columns_and_makes_the_others_zero_views():
    n = 37
    rng = np.random.default_rng(5)
    batch = FlowBatch(**{c: rng.integers(1, 200, n * d.itemsize, np.uint8).view(d) for c, d in COLUMNS.items()})
    kept = frozenset(("bytes", "end", "src_addr"))
    out = batch.only(kept)
    for c, d in COLUMNS.items():
        col = getattr(out, c)
        if c in kept:
            assert col is getattr(batch, c)
        else:
            assert col.dtype == d and len(col) == n and col.strides == (0,)
            assert not col.tobytes().strip(b"\0")
