"""What a provenance check costs against the read its reader makes anyway.

    python benchmarks/bench_provenance.py make /tmp/bench/eigenpairs.h5 --dim 1000000 --k 256
    python benchmarks/bench_provenance.py hash /tmp/bench/eigenpairs.h5   # the record check
    python benchmarks/bench_provenance.py read /tmp/bench/eigenpairs.h5   # one streamed pass

``hash`` is what every job does to each input before it reads it (the SHA-256 of the file,
:func:`hessketch.provenance.content_digest`); ``read`` is one pass over all eigenvector rows in
float64 blocks, as the overlap and the stability table make. Time the two as whole processes,
in turn, and quote the median ratio (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import time

import torch

from hessketch.pipeline.common import EigenpairWriter, eigenpair_row_blocks
from hessketch.provenance import content_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["make", "hash", "read"])
    parser.add_argument("path")
    parser.add_argument("--dim", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=256)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.mode == "make":
        gen = torch.Generator().manual_seed(0)
        attrs = {"method": "sketched", "provenance": {"step": 0}}
        with EigenpairWriter(args.path, args.dim, args.k, attrs) as writer:
            block = 1 << 16
            for start in range(0, args.dim, block):
                rows = slice(start, min(start + block, args.dim))
                n = rows.stop - rows.start
                writer.write_rows(rows, torch.randn(n, args.k, generator=gen))
            writer.close(torch.arange(args.k, dtype=torch.float64))
    elif args.mode == "hash":
        print(content_digest(args.path))
    else:
        total = sum(float(b.sum()) for b in eigenpair_row_blocks(args.path, 1 << 16))
        print(total)
    print(f"{args.mode}: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
