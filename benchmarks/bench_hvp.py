"""Cost of one Hessian-vector product, in units of one gradient, per HVP formulation.

Usage: python benchmarks/bench_hvp.py [--points 1000] [--block 64] [--repeats 7]
Prints the median seconds per HVP for each method and block size, and the ratio to the
median seconds of one full-batch gradient, all measured in this one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hessketch.hessian import HVP_METHODS, HessianOperator
from hessketch.models import build_model, flatten_params, unflatten_params

# input shape of one example (image batches are (N, C, H, W)) and number of classes, per model
INPUTS = {
    "mlp16": ((1, 16, 16), 10),
    "cnn3c3d": ((3, 32, 32), 10),
    "cnn2c2d": ((1, 28, 28), 10),
    "allcnnc": ((3, 32, 32), 100),
    "resnet18": ((3, 224, 224), 1000),
}


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="mlp16", choices=list(INPUTS))
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model({"name": args.model}).eval()
    theta = flatten_params(model)
    shape, classes = INPUTS[args.model]
    x = torch.randn(args.points, *shape)
    y = torch.randint(0, classes, (args.points,))

    def gradient() -> None:
        flat = theta.clone().requires_grad_(True)
        logits = torch.func.functional_call(model, unflatten_params(model, flat), (x,))
        torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), flat)

    t_grad = median_seconds(gradient, args.repeats)
    threads = torch.get_num_threads()
    print(f"model={args.model} D={theta.numel()} points={args.points} threads={threads}")
    print(f"gradient: {t_grad * 1e3:.3f} ms (median of {args.repeats})")
    print(f"{'method':<24}{'block':>6}{'ms/HVP':>10}{'HVP/grad':>10}")
    for method in HVP_METHODS:
        op = HessianOperator(model, theta, x, y, batch_size=args.points, method=method)
        for b in args.blocks:
            v = torch.randn(theta.numel(), b)
            t = median_seconds(lambda v=v, op=op: op.matmat(v), args.repeats) / b
            print(f"{method:<24}{b:>6}{t * 1e3:>10.3f}{t / t_grad:>10.2f}")


if __name__ == "__main__":
    main()
