from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tolerances per dtype for comparisons with exact float64 references (relative).
RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One clean run of the tiny study (tests/configs/tiny.yaml), shared by the workflow and
    fault tests; a test that changes files works on a copy (``workflow_helpers.copy_run``)."""
    from workflow_helpers import run_tiny

    workdir = tmp_path_factory.mktemp("tiny")
    return workdir, run_tiny(workdir)
