from __future__ import annotations

import pytest
import torch

# Tolerances per dtype for comparisons with exact float64 references (relative).
RTOL = {torch.float64: 1e-10, torch.float32: 1e-4}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
