"""Tests for course_lib.nets: the seed networks, seed 003's example, init_params.

The forward passes here are written out in plain numpy on purpose (not taken
from course_lib.reference) so that the seed data is checked independently of
the answers, and once more against torch in float64.
"""

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from course_lib import nets
from course_lib.nets import (
    SeedNet,
    SSRExample,
    describe,
    init_params,
    seed000,
    seed001,
    seed003,
    seed004,
    softplus,
    ssr,
    ssr_forward,
)

SEED_NETS = [seed000, seed001, seed004]
RTOL_SEED = 1e-6  # for numbers the seeds print with 7 significant digits
# Numbers printed with 6 decimals (0.413382) are only good to half a unit of
# the last digit, which for the smaller ones is more than rtol 1e-6.
DEC6 = {"rtol": 0.0, "atol": 5e-7}


# --------------------------------------------------------------------------
# An independent forward pass (numpy) and losses
# --------------------------------------------------------------------------

def _sigmoid(z):
    # Two branches so that neither exp can overflow.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_ACT = {
    "sigmoid": _sigmoid,
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "identity": lambda z: z,
    "softmax": _softmax,
}


def forward(params, X, activations):
    """Returns the lists Zs and As (As[0] is X)."""
    Zs, As = [], [X]
    for (W, b), act in zip(params, activations, strict=True):
        Z = As[-1] @ W.T + b
        Zs.append(Z)
        As.append(_ACT[act](Z))
    return Zs, As


def loss_value(A, Y, loss):
    if loss == "mse":
        return np.mean(0.5 * np.sum((A - Y) ** 2, axis=1))
    if loss == "bce":
        return np.mean(-(Y * np.log(A) + (1 - Y) * np.log(1 - A)))
    raise AssertionError(loss)


# --------------------------------------------------------------------------
# Structure, dtypes, freshness
# --------------------------------------------------------------------------

def test_module_imports_only_numpy_and_course_helpers():
    tree = ast.parse(Path(nets.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported <= {"__future__", "numbers", "collections", "collections.abc",
                        "dataclasses", "numpy", "course_lib._validate"}, imported


def test_importing_nets_loads_no_torch_matplotlib_or_reference():
    code = ("import sys, course_lib.nets; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'matplotlib') or m.startswith('course_lib.reference')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("make", SEED_NETS)
def test_seed_net_shapes_and_dtypes(make):
    net = make()
    assert isinstance(net, SeedNet)
    assert net.name == make.__name__
    assert net.description and "\n" not in net.description
    assert net.notation.count("\n") >= 1
    sizes = net.layer_sizes
    assert len(net.params) == len(net.activations) == len(sizes) - 1
    assert net.X.shape == (net.X.shape[0], sizes[0])
    assert net.Y.shape == (net.X.shape[0], sizes[-1])
    for (W, b), n_in, n_out in zip(net.params, sizes[:-1], sizes[1:], strict=True):
        assert W.shape == (n_out, n_in) and b.shape == (n_out,)
        assert W.dtype == b.dtype == np.float64
    assert net.X.dtype == net.Y.dtype == np.float64
    assert set(net.activations) <= set(nets.ACTIVATIONS)
    assert net.loss in nets.LOSSES


@pytest.mark.parametrize("make", SEED_NETS)
def test_seed_net_is_fresh_every_call(make):
    a = make()
    a.params[0][0][0, 0] = 123.0
    a.params[-1][1][0] = 123.0
    a.X[0, 0] = 123.0
    a.Y[0, 0] = 123.0
    b = make()
    assert b.params[0][0][0, 0] != 123.0
    assert b.params[-1][1][0] != 123.0
    assert b.X[0, 0] != 123.0 and b.Y[0, 0] != 123.0
    # no array is shared between two calls
    arrays_a = [a.X, a.Y] + [m for layer in a.params for m in layer]
    arrays_b = [b.X, b.Y] + [m for layer in b.params for m in layer]
    for x, y in zip(arrays_a, arrays_b, strict=True):
        assert not np.shares_memory(x, y)


def test_seed_net_is_frozen():
    net = seed000()
    with pytest.raises(dataclasses.FrozenInstanceError):
        net.X = np.zeros((1, 3))


def test_seed_net_rejects_inconsistent_fields():
    net = seed000()
    fields = {f.name: getattr(net, f.name) for f in dataclasses.fields(net)}
    with pytest.raises(ValueError, match=r"params\[0\]\[0\] \(W1\): expected shape \(4, 3\)"):
        SeedNet(**{**fields, "params": [(net.params[0][0].T, net.params[0][1]),
                                        net.params[1]]})
    with pytest.raises(ValueError, match="activations\\[1\\]: unknown value 'softplus'"):
        SeedNet(**{**fields, "activations": ("sigmoid", "softplus")})
    with pytest.raises(ValueError, match="loss: unknown value"):
        SeedNet(**{**fields, "loss": "l2"})
    with pytest.raises(ValueError, match="Y: expected shape"):
        SeedNet(**{**fields, "Y": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="X: expected a float64 numpy array"):
        SeedNet(**{**fields, "X": net.X.astype(np.float32)})


def test_seed_values_as_written_in_the_seeds():
    n0 = seed000()
    assert_array_equal(n0.X, [[1.0, 0.5, -1.0]])
    assert_array_equal(n0.Y, [[1.0, 0.0]])
    assert n0.params[0][0][1, 0] == 0.7 and n0.params[1][0][1, 3] == -0.5  # w^1_21, w^2_24
    assert_array_equal(n0.params[0][1], [0.1, -0.2, 0.05, 0.0])
    assert_array_equal(n0.params[1][1], [0.05, -0.1])

    n1 = seed001()
    assert_array_equal(n1.params[0][0], np.full((2, 2), 0.5))
    assert_array_equal(n1.params[1][0], [[1.0, 1.0]])
    assert_array_equal(n1.params[0][1], [0.0, 0.0])
    assert_array_equal(n1.params[1][1], [0.0])
    assert "bias" in n1.description and "zero" in n1.description

    n4 = seed004()
    assert_array_equal(n4.X, [[1.0, 2.0], [3.0, 4.0]])
    assert_array_equal(n4.Y, [[0.0], [1.0]])
    # the weights set by hand, not torch's random initial ones (0.5395, ...)
    assert_array_equal(n4.params[0][0], [[-1.0, 2.0], [3.0, 0.5], [-0.1, -4.0]])
    assert_array_equal(n4.params[2][1], [0.1])


# --------------------------------------------------------------------------
# The numbers of COURSE.md
# --------------------------------------------------------------------------

def test_seed000_forward_numbers():
    net = seed000()
    Zs, As = forward(net.params, net.X, net.activations)
    assert_allclose(Zs[0][0], [-0.35, 0.75, -0.55, -0.30], rtol=1e-12)
    assert_allclose(As[1][0], [0.413382, 0.679179, 0.365864, 0.425557], **DEC6)
    assert_allclose(As[2][0], [0.515852, 0.484148], **DEC6)
    assert_allclose(loss_value(As[2], net.Y, net.loss), 0.2343997, rtol=RTOL_SEED)


def test_seed001_forward_numbers():
    net = seed001()
    Zs, As = forward(net.params, net.X, net.activations)
    assert_allclose(Zs[0][0], [0.75, 0.75], rtol=1e-12)
    assert_allclose(As[2][0, 0], 0.7954926, rtol=RTOL_SEED)
    assert_allclose(loss_value(As[2], net.Y, net.loss), 0.2287937, rtol=RTOL_SEED)


def test_seed004_forward_numbers():
    net = seed004()
    Zs, As = forward(net.params, net.X, net.activations)
    assert_allclose(Zs[0], [[4.0, 2.0, -7.8], [6.0, 9.0, -16.0]], rtol=1e-12)
    assert_allclose(Zs[1], [[0.0, 8.0], [8.0, 10.1]], rtol=1e-12)
    assert_allclose(As[3][:, 0], [0.09112296, 0.74459692], rtol=RTOL_SEED)
    assert_allclose(loss_value(As[3], net.Y, net.loss), 0.19522886, rtol=RTOL_SEED)
    # the two special cases the lesson relies on
    assert Zs[1][0, 0] == 0.0  # exactly: ReLU'(0) is used
    assert np.all(Zs[0][:, 2] < 0)  # third unit of layer 1 is dead for both samples


@pytest.mark.parametrize("make", SEED_NETS)
def test_seed_forward_matches_torch_float64(make):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    net = make()
    _, As = forward(net.params, net.X, net.activations)

    t_act = {"sigmoid": torch.sigmoid, "relu": torch.relu,
             "softmax": lambda z: torch.softmax(z, dim=1)}
    A = torch.from_numpy(net.X)
    for (W, b), act in zip(net.params, net.activations, strict=True):
        A = t_act[act](F.linear(A, torch.from_numpy(W), torch.from_numpy(b)))
    Y = torch.from_numpy(net.Y)
    if net.loss == "mse":
        L = (0.5 * ((A - Y) ** 2).sum(dim=1)).mean()
    else:
        L = F.binary_cross_entropy(A, Y)
    assert A.dtype == torch.float64
    assert_allclose(A.numpy(), As[-1], rtol=1e-12, atol=1e-15)
    assert_allclose(L.item(), loss_value(As[-1], net.Y, net.loss), rtol=1e-12)


# --------------------------------------------------------------------------
# Seed 003
# --------------------------------------------------------------------------

SEED003_BUGGY_Y_GREEN = [1.559208056553835, 1.8091085311575739, 1.9914071495536403]


def test_seed003_data():
    ex = seed003()
    assert isinstance(ex, SSRExample)
    assert ex.x.shape == ex.y.shape == (3,)
    assert ex.x.dtype == ex.y.dtype == np.float64
    assert_array_equal(ex.x, [0.1, 0.53, 0.82])
    assert_array_equal(ex.y, [1.2, 3.2, 1.1])
    assert set(ex.params) == {"w1", "w2", "w3", "w4", "b1", "b2", "b3"}
    assert all(type(v) is float for v in ex.params.values())
    w = [ex.params[k] for k in ("w1", "w2", "w3", "w4")]
    assert_allclose(w, [0.496714, -0.138264, 0.647689, 1.523030], **DEC6)
    assert ex.params["b1"] == ex.params["b2"] == ex.params["b3"] == 0.0
    assert ex.learning_rate == 0.01


def test_seed003_is_fresh_and_leaves_global_random_state_alone():
    # seed003 must not reseed the notebook's global generator (legacy API on
    # purpose: that is the state the seed's np.random.seed(42) would clobber)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    a = seed003()
    assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    a.params["w1"] = 5.0
    a.x[0] = 5.0
    b = seed003()
    assert b.params["w1"] != 5.0 and b.x[0] != 5.0


def _seed003_forward_plain(x, p, buggy):
    # The seed's own softplus, log(1 + e^x), is fine for these small inputs.
    sp = lambda z: np.log(1.0 + np.exp(z))  # noqa: E731
    y_blue = sp(p["w1"] * x + p["b1"])
    y_orange = sp(p["w1"] * x + p["b1"]) if buggy else sp(p["w2"] * x + p["b2"])
    return y_blue, y_orange, p["w3"] * y_blue + p["w4"] * y_orange + p["b3"]


def test_seed003_buggy_forward_reproduces_the_seed():
    ex = seed003()
    _, _, y_green = _seed003_forward_plain(ex.x, ex.params, buggy=True)
    assert_allclose(y_green, SEED003_BUGGY_Y_GREEN, rtol=1e-12)
    # the same numbers from ssr_forward when w2, b2 are replaced by w1, b1
    p = {**ex.params, "w2": ex.params["w1"], "b2": ex.params["b1"]}
    assert_allclose(ssr_forward(ex.x, p)["y_green"], SEED003_BUGGY_Y_GREEN, rtol=1e-12)
    # the seed's "-2 * SSR" and the correct -2 * sum of residuals (COURSE.md)
    assert_allclose(-2 * ssr(ex.y, y_green), -5.716432424534343, rtol=1e-12)
    assert_allclose(-2 * np.sum(ex.y - y_green), -0.28055, rtol=1e-4)


def test_ssr_forward_is_the_corrected_one():
    ex = seed003()
    out = ssr_forward(ex.x, ex.params)
    y_blue, y_orange, y_green = _seed003_forward_plain(ex.x, ex.params, buggy=False)
    assert set(out) == {"y_blue", "y_orange", "y_green"}
    assert_allclose(out["y_blue"], y_blue, rtol=1e-12)
    assert_allclose(out["y_orange"], y_orange, rtol=1e-12)
    assert_allclose(out["y_green"], y_green, rtol=1e-12)
    assert out["y_green"].shape == (3,)
    assert not np.allclose(out["y_green"], SEED003_BUGGY_Y_GREEN)
    # with y_orange fixed the b3 gradient is about -1.76581 (COURSE.md)
    assert_allclose(-2 * np.sum(ex.y - out["y_green"]), -1.76581, rtol=1e-5)


def test_softplus_is_stable_and_correct():
    z = np.array([-50.0, -1.0, 0.0, 1.0, 50.0])
    assert_allclose(softplus(z), np.log1p(np.exp(z)), rtol=1e-12)
    # (exp(-1000) underflowing to 0 is harmless; overflow would not be)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        big = softplus(np.array([1000.0, -1000.0]))
    assert_allclose(big, [1000.0, 0.0])
    assert softplus(np.float64(0.0)) == pytest.approx(np.log(2.0))


def test_ssr():
    assert ssr([1.0, 2.0, 3.0], [1.0, 0.0, 6.0]) == 13.0
    assert isinstance(ssr([1.0], [0.0]), float)


def test_seed003_helpers_reject_bad_input():
    ex = seed003()
    with pytest.raises(ValueError, match="params: missing key.*w4"):
        ssr_forward(ex.x, {k: v for k, v in ex.params.items() if k != "w4"})
    with pytest.raises(ValueError, match="params: expected a dict"):
        ssr_forward(ex.x, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"params\['w1'\]: expected a 0-D array"):
        ssr_forward(ex.x, {**ex.params, "w1": [1.0, 2.0]})
    with pytest.raises(ValueError, match="x: expected a 0-D or 1-D array"):
        ssr_forward(ex.x.reshape(3, 1), ex.params)
    with pytest.raises(ValueError, match=r"y_hat: expected the same shape as y, \(3,\)"):
        ssr(ex.y, [1.0, 2.0])
    with pytest.raises(ValueError, match="x: contains NaN"):
        softplus([0.0, np.nan])


# --------------------------------------------------------------------------
# init_params
# --------------------------------------------------------------------------

def test_init_params_shapes_and_zero_biases():
    params = init_params((2, 16, 3))
    assert [(W.shape, b.shape) for W, b in params] == [((16, 2), (16,)), ((3, 16), (3,))]
    for W, b in params:
        assert W.dtype == b.dtype == np.float64
        assert_array_equal(b, 0.0)


def test_init_params_draws_from_default_rng():
    params = init_params([3, 4, 2], seed=7)
    rng = np.random.default_rng(7)
    W1 = rng.normal(0.0, np.sqrt(2 / 7), size=(4, 3))
    W2 = rng.normal(0.0, np.sqrt(2 / 6), size=(2, 4))
    assert_array_equal(params[0][0], W1)
    assert_array_equal(params[1][0], W2)


def test_init_params_reproducible_and_seeded():
    a, b, c = init_params((5, 3), seed=1), init_params((5, 3), seed=1), init_params((5, 3), seed=2)
    assert_array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[0][0], c[0][0])


@pytest.mark.parametrize(("scale", "std"), [("xavier", np.sqrt(2 / 900)),
                                            ("he", np.sqrt(2 / 400)),
                                            (0.3, 0.3)])
def test_init_params_scale(scale, std):
    W, _ = init_params((400, 500), seed=3, scale=scale)[0]
    # 200 000 draws: the sample std is within 1 % of the target
    assert W.std() == pytest.approx(std, rel=0.01)
    assert abs(W.mean()) < 0.01 * std


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"layer_sizes": (3,)}, r"layer_sizes: expected at least two sizes"),
    ({"layer_sizes": ()}, r"layer_sizes: expected at least two sizes"),
    ({"layer_sizes": (3, 0, 2)}, r"layer_sizes\[1\]: expected a finite value > 0, got 0"),
    ({"layer_sizes": (3, -4)}, r"layer_sizes\[1\]: expected a finite value > 0"),
    ({"layer_sizes": (3, 2.5)}, r"layer_sizes\[1\]: expected an integer, got 2.5"),
    ({"layer_sizes": (True, 2)}, r"layer_sizes\[0\]: expected an integer"),
    ({"layer_sizes": "32"}, r"layer_sizes: expected a sequence of positive ints"),
    ({"layer_sizes": 5}, r"layer_sizes: expected a sequence of positive ints"),
    ({"layer_sizes": (3, 2), "scale": "glorot"},
     r"scale: unknown value 'glorot'; expected one of 'xavier', 'he'"),
    ({"layer_sizes": (3, 2), "scale": -0.1}, r"scale: expected a finite value > 0"),
    ({"layer_sizes": (3, 2), "scale": 0.0}, r"scale: expected a finite value > 0"),
    ({"layer_sizes": (3, 2), "scale": None}, r"scale: expected 'xavier', 'he' or a positive"),
    ({"layer_sizes": (3, 2), "seed": -1}, r"seed: expected a finite value >= 0"),
    ({"layer_sizes": (3, 2), "seed": 1.5}, r"seed: expected an integer"),
])
def test_init_params_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        init_params(**kwargs)


def test_init_params_accepts_numpy_ints():
    params = init_params(np.array([2, 3, 1]), seed=np.int64(4))
    assert params[0][0].shape == (3, 2) and params[1][0].shape == (1, 3)


# --------------------------------------------------------------------------
# describe
# --------------------------------------------------------------------------

def test_describe_seed_net():
    text = describe(seed000())
    lines = text.splitlines()
    assert lines[0].startswith("seed000: ")
    assert "layer 1: W (4, 3), b (4,) -> sigmoid" in text
    assert "layer 2: W (2, 4), b (2,) -> softmax" in text
    assert "20 weights, 6 biases" in text  # the counts seed 000 states
    assert len(lines) == 5


def test_describe_plain_params():
    text = describe(init_params((2, 16, 3)), activations=("relu", "softmax"))
    assert "layer 1: W (16, 2), b (16,) -> relu" in text
    assert "layer 2: W (3, 16), b (3,) -> softmax" in text
    assert "-> " not in describe(init_params((2, 3)))


def test_describe_rejects_bad_params():
    W1, b1 = np.zeros((4, 3)), np.zeros(4)
    with pytest.raises(ValueError,
                       match=r"params\[1\]\[0\]: expected shape \(n_out, n_in=4\), got \(2, 3\)"):
        describe([(W1, b1), (np.zeros((2, 3)), np.zeros(2))])
    with pytest.raises(ValueError, match=r"params\[0\]\[1\]: expected shape \(n_out=4,\)"):
        describe([(W1, np.zeros(3))])
    with pytest.raises(ValueError, match=r"params\[0\]: expected a pair \(W, b\)"):
        describe([W1])
    with pytest.raises(ValueError, match="activations: expected 1 names"):
        describe([(W1, b1)], activations=("relu", "relu"))
