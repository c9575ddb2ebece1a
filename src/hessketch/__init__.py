"""hessketch: Hessian eigenpairs of large networks by sketched eigendecomposition.

The public API; everything else is reachable through its module (``hessketch.metrics``,
``hessketch.testmatrices``, …) and the workflow's stages live in ``hessketch.pipeline``.
"""

from hessketch.certificate import Certificate, certify
from hessketch.errors import (
    DataError,
    HessketchError,
    IntegrityError,
    NonDeterminismError,
    NumericalError,
    SketchStoreError,
    TrajectoryError,
)
from hessketch.hessian import HessianOperator, dense_matrix, deterministic_mode
from hessketch.models import build_model, flatten_params, register_model, unflatten_params
from hessketch.seigh import Decomposition, decompose, measure_sketch, reduce_sketch, seigh
from hessketch.sketch import SketchSpec
from hessketch.testmatrices import make_test_matrix

__all__ = [
    "Certificate",
    "DataError",
    "Decomposition",
    "HessianOperator",
    "HessketchError",
    "IntegrityError",
    "NonDeterminismError",
    "NumericalError",
    "SketchSpec",
    "SketchStoreError",
    "TrajectoryError",
    "build_model",
    "certify",
    "decompose",
    "dense_matrix",
    "deterministic_mode",
    "flatten_params",
    "make_test_matrix",
    "measure_sketch",
    "reduce_sketch",
    "register_model",
    "seigh",
    "unflatten_params",
]

__version__ = "0.1.0"
