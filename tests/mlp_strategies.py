"""A hypothesis strategy for random MLP problems (autograd and finite-difference tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

HIDDEN = ("sigmoid", "relu", "tanh", "identity", "softmax")
# Every valid (loss, last activation) pair of course_lib.reference.backprop.
OUTPUT_LOSS = ([("mse", a) for a in HIDDEN]
               + [("bce", "sigmoid"), ("cross_entropy", "softmax"),
                  ("cross_entropy", "identity")])
seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(1, 6)
batch_sizes = st.integers(1, 7)


@st.composite
def networks(draw):
    """A random MLP problem: (params, X, Y, activations, loss).

    Depth 1 to 4, widths 1 to 6, batch 1 to 7, any hidden activations, any
    valid output pair; params are fresh, writeable float64 arrays (what
    numerical_gradient perturbs in place); cross-entropy targets are integer
    labels or one-hot rows.
    """
    depth = draw(st.integers(1, 4))
    widths = draw(st.lists(sizes, min_size=depth + 1, max_size=depth + 1))
    N = draw(batch_sizes)
    hidden = draw(st.lists(st.sampled_from(HIDDEN), min_size=depth - 1, max_size=depth - 1))
    loss, last = draw(st.sampled_from(OUTPUT_LOSS))
    int_labels = draw(st.booleans())
    rng = np.random.default_rng(draw(seeds))
    params = [(rng.standard_normal((o, i)) * 0.8, rng.standard_normal(o) * 0.5)
              for i, o in zip(widths[:-1], widths[1:], strict=True)]
    X = rng.standard_normal((N, widths[0]))
    C = widths[-1]
    if loss == "mse":
        Y = rng.standard_normal((N, C))
    elif loss == "bce":
        Y = (rng.random((N, C)) < 0.5).astype(float)
    else:
        labels = rng.integers(0, C, N)
        Y = labels if int_labels else np.eye(C)[labels]
    return params, X, Y, (*hidden, last), loss
