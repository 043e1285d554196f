"""Print every seed example of the course, reproduced by course_lib.reference.

    python -m course_lib.reference          # numpy only
    python -m course_lib.reference --torch  # also check each against autograd

The numbers are those COURSE.md lists; a line marked MISMATCH means the
reference and the expected value disagree beyond the printed digits.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .. import nets
from . import backprop, mlp_forward, ssr_output_grads

_failures: list[str] = []


def _show(label: str, got, expected, decimals: int = 6) -> None:
    """Print a value; it matches when it rounds to ``expected`` at ``decimals`` places."""
    got = np.asarray(got, dtype=float)
    ok = np.allclose(got, expected, rtol=0, atol=0.5 * 10.0**-decimals * (1 + 1e-9))
    if not ok:
        _failures.append(label)
    fmt = np.array2string(got, precision=max(decimals, 7), floatmode="fixed", separator=", ")
    print(f"  {label:<28} {fmt}   {'ok' if ok else 'MISMATCH, expected ' + str(expected)}")


def _check_torch(net) -> None:
    from .autograd import torch_backprop  # imports torch: only on request

    loss, grads = backprop(net.params, net.X, net.Y, net.activations, net.loss)
    t_loss, t_grads = torch_backprop(net.params, net.X, net.Y, net.activations, net.loss)
    worst = max(float(np.max(np.abs(a - b)))
                for g, tg in zip(grads, t_grads, strict=True)
                for a, b in zip(g, tg, strict=True))
    _show("torch autograd: loss", t_loss, loss, 12)
    print(f"  {'largest |manual - autograd|':<28} {worst:.2e}")
    if worst > 1e-12:
        _failures.append(f"{net.name} torch")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="compare with PyTorch autograd")
    args = parser.parse_args(argv)

    net = nets.seed000()
    print(f"Seed 000: {net.description}")
    cache = mlp_forward(net.params, net.X, net.activations)
    loss, grads = backprop(net.params, net.X, net.Y, net.activations, net.loss)
    _show("a1", cache[1][1][0], [0.413382, 0.679179, 0.365864, 0.425557])
    _show("a2", cache[2][1][0], [0.515852, 0.484148])
    _show("L", loss, 0.2343997, 7)
    _show("db2", grads[1][1], [-0.241831, 0.241831])
    _show("db1", grads[0][1], [-0.029322, 0.036886, 0.011221, -0.035471])
    if args.torch:
        _check_torch(net)

    net = nets.seed001()
    print(f"\nSeed 001: {net.description}")
    cache = mlp_forward(net.params, net.X, net.activations)
    loss, grads = backprop(net.params, net.X, net.Y, net.activations, net.loss)
    _show("y_hat", cache[-1][1][0, 0], 0.7954926, 7)
    _show("L", loss, 0.2287937, 7)
    _show("dL/dw_out", grads[1][0][0], [-0.138897, -0.138897])
    _show("dL/dv from x1 (W1[:, 0])", grads[0][0][:, 0], [-0.022281, -0.022281])
    _show("dL/dv from x2 (W1[:, 1])", grads[0][0][:, 1], [-0.044561, -0.044561])
    if args.torch:
        _check_torch(net)

    ex = nets.seed003()
    print(f"\nSeed 003: {ex.description}")
    g = ssr_output_grads(ex.x, ex.y, ex.params)
    seed_forward = dict(ex.params, w2=ex.params["w1"], b2=ex.params["b1"])  # the seed's bug
    g_seed = ssr_output_grads(ex.x, ex.y, seed_forward)
    _show("dSSR/db3 (seed's forward)", g_seed["b3"], -0.28055, 5)
    _show("dSSR/db3 (fixed forward)", g["b3"], -1.76581, 5)
    print(f"  {'dSSR/dw3, dSSR/dw4 (fixed)':<28} [{g['w3']:.7f}, {g['w4']:.7f}]")
    print("  the seed prints -5.71643 for dSSR/db3: it used -2*SSR instead of -2*sum(residuals)")

    net = nets.seed004()
    print(f"\nSeed 004: {net.description}")
    cache = mlp_forward(net.params, net.X, net.activations)
    loss, grads = backprop(net.params, net.X, net.Y, net.activations, net.loss)
    _show("y_hat", cache[-1][1][:, 0], [0.09112296, 0.74459692], 8)
    _show("J", loss, 0.19522886, 8)
    _show("db3", grads[2][1], [-0.08214], 5)
    _show("dW3", grads[2][0], [[-1.021612, -0.925294]])
    _show("Z2[0, 0] (ReLU'(0) = 0)", cache[2][0][0, 0], 0.0)
    _show("dead unit: dW1[2], db1[2]", [*grads[0][0][2], grads[0][1][2]], [0.0, 0.0, 0.0])
    if args.torch:
        _check_torch(net)

    if _failures:
        print(f"\n{len(_failures)} value(s) do not match: {', '.join(_failures)}")
        return 1
    print("\nEvery seed number reproduced.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
