"""The course's own backprop against torch autograd, on a network of a realistic size.

    python bench/backprop_bench.py [--repeats 100] [--batch 256] [--sizes 784 256 10]

Why: lesson 04 has students write backpropagation by hand, and lesson 05
says autograd computes the same thing. course_lib.reference.mlp.backprop is
the answer key for both. This checks, on an MNIST-sized MLP (784-256-10,
ReLU hidden layer, softmax + cross-entropy on a batch of 256, float64), that

- its gradients agree with torch autograd's to < 1e-10 relative (exits 1
  if not), and
- how long one forward + backward pass takes in each, median over repeats
  after a warm-up.

Thread pools are fixed when a process loads its BLAS, so each thread setting
is measured in a fresh child process: "1" sets OPENBLAS_NUM_THREADS=1 (numpy)
and torch.set_num_threads(1); "default" changes nothing, so numpy and torch
use what they would in a notebook.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TOLERANCE = 1e-10  # max |reference - torch| / max |torch|, per gradient array
WARMUP = 5
ACTIVATIONS = ("relu", "softmax")
LOSS = "cross_entropy"


def make_problem(sizes, batch: int, seed: int = 0):
    """He-initialised params, standard-normal inputs, integer labels (float64)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    params = [(rng.normal(0.0, np.sqrt(2.0 / n_in), (n_out, n_in)), rng.normal(0.0, 0.1, n_out))
              for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    X = rng.normal(size=(batch, sizes[0]))
    y = rng.integers(0, sizes[-1], size=batch)
    return params, X, y


def reference_step(params, X, y):
    from course_lib.reference.mlp import backprop

    activations = ("relu",) * (len(params) - 1) + ("softmax",)
    return backprop(params, X, y, activations, LOSS)


def torch_step(leaves, X, y):
    """Forward and backward through autograd; (loss, [(dW, db), ...]) as tensors."""
    import torch
    import torch.nn.functional as F

    for p in leaves:
        p.grad = None
    A = X
    pairs = list(zip(leaves[::2], leaves[1::2], strict=True))
    for W, b in pairs[:-1]:
        A = torch.relu(F.linear(A, W, b))
    loss = F.cross_entropy(F.linear(A, *pairs[-1]), y)
    loss.backward()
    return loss, [(W.grad, b.grad) for W, b in pairs]


def median_ms(step, repeats: int) -> float:
    import statistics

    for _ in range(WARMUP):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def max_relative_difference(ours, theirs) -> float:
    import numpy as np

    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        scale = max(float(np.max(np.abs(b))), np.finfo(float).tiny)
        worst = max(worst, float(np.max(np.abs(a - b))) / scale)
    return worst


def measure(sizes, batch: int, repeats: int, threads: str) -> dict:
    """In this process: both timings and the agreement of loss and gradients."""
    import torch

    if threads == "1":
        torch.set_num_threads(1)
    params, X, y = make_problem(sizes, batch)
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
              for pair in params for a in pair]
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    loss, grads = reference_step(params, X, y)
    t_loss, t_grads = torch_step(leaves, Xt, yt)
    ours = [g for pair in grads for g in pair]
    theirs = [g.detach().numpy() for pair in t_grads for g in pair]
    return {"threads": threads, "torch_threads": torch.get_num_threads(),
            "reference_ms": median_ms(lambda: reference_step(params, X, y), repeats),
            "torch_ms": median_ms(lambda: torch_step(leaves, Xt, yt), repeats),
            "grad_rel_diff": max_relative_difference(ours, theirs),
            "loss_diff": abs(loss - float(t_loss))}


def run_child(args, threads: str) -> dict:
    """measure() in a fresh process, so that its thread pools start as asked."""
    env = dict(os.environ)
    if threads == "1":
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--child", threads, "--repeats", str(args.repeats),
           "--batch", str(args.batch), "--sizes", *map(str, args.sizes)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_table(rows, args) -> bool:
    shape = "-".join(map(str, args.sizes))
    print(f"\n== course_lib.reference.mlp.backprop vs torch autograd: MLP {shape} "
          f"({', '.join(ACTIVATIONS)} + cross-entropy), batch {args.batch}, float64, "
          f"forward + backward, median of {args.repeats} ==")
    print(f"{'threads':<12} {'reference ms':>12} {'torch ms':>9} {'reference/torch':>15} "
          f"{'max rel grad diff':>17} {'|loss diff|':>11}")
    ok = True
    for r in rows:
        label = "1" if r["threads"] == "1" else f"default ({r['torch_threads']})"
        ok &= r["grad_rel_diff"] < TOLERANCE
        print(f"{label:<12} {r['reference_ms']:>12.2f} {r['torch_ms']:>9.2f} "
              f"{r['reference_ms'] / r['torch_ms']:>14.2f}x {r['grad_rel_diff']:>17.1e} "
              f"{r['loss_diff']:>11.1e}")
    print(f"gradients agree to < {TOLERANCE:g} relative: {'yes' if ok else 'NO'}")
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--sizes", type=int, nargs="+", default=[784, 256, 10],
                   help="layer widths, input first (default 784 256 10)")
    p.add_argument("--child", choices=["1", "default"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if len(args.sizes) < 2 or args.repeats < 1 or args.batch < 1:
        p.error("--sizes needs at least two widths; --repeats and --batch at least 1")
    if args.child:
        print(json.dumps(measure(args.sizes, args.batch, args.repeats, args.child)))
        return 0
    rows = [run_child(args, threads) for threads in ("1", "default")]
    return 0 if print_table(rows, args) else 1


if __name__ == "__main__":
    sys.exit(main())
