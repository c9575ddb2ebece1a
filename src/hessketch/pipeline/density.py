"""Stage ``spectral_density``: the SLQ density and the Hutch++ trace of one Hessian."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hessketch.curvature import deterministic_mode
from hessketch.density import hutchpp_trace, slq_density
from hessketch.pipeline.common import pick_device
from hessketch.pipeline.hessian_at_step import HessianSpec, hessian_at_step
from hessketch.provenance import hessian_facts
from hessketch.store import write_json_atomic

__all__ = ["spectral_density"]

log = logging.getLogger(__name__)


def spectral_density(
    *,
    trajectory_path: str | Path,
    step: int,
    hessian: HessianSpec,
    probes: int,
    steps: int,
    trace_products: int,
    seed: int,
    density_path: str | Path,
    device: str = "auto",
) -> None:
    """SLQ nodes and weights (``probes`` × ``steps`` products) and a Hutch++ trace.

    Writes one JSON file (checksummed): the nodes and weights of every probe, the SLQ and
    Hutch++ traces with the latter's standard error, the products and seconds, and the
    provenance of the Hessian (parameter hash, Hessian set, curvature).
    """
    deterministic_mode()
    dev = pick_device(device)
    op, provenance = hessian_at_step(trajectory_path, step, hessian, device=dev)
    started = time.perf_counter()
    density = slq_density(
        op.matmat, op.dim, probes=probes, steps=min(steps, op.dim), seed=seed, dtype=op.dtype
    )
    trace = hutchpp_trace(op.matmat, op.dim, products=trace_products, seed=seed, dtype=op.dtype)
    seconds = time.perf_counter() - started
    write_json_atomic(
        density_path,
        {
            "step": step,
            "identity": hessian_facts(provenance),
            "dim": op.dim,
            "probes": probes,
            "lanczos_steps": steps,
            "nodes": density.nodes.tolist(),
            "weights": density.weights.tolist(),
            "slq_trace": density.trace(),
            "hutchpp_trace": trace.value,
            "hutchpp_standard_error": trace.standard_error,
            "products": op.num_products,
            "seconds": seconds,
            "provenance": provenance,
        },
    )
    log.info(
        "step %d: SLQ of %d probes × %d steps, trace %.5g (Hutch++ %.5g ± %.2g), %d products "
        "in %.1f s",
        step,
        probes,
        steps,
        density.trace(),
        trace.value,
        trace.standard_error,
        op.num_products,
        seconds,
    )
