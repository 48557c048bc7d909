"""Shared test settings: CPU, few threads, a fixed seed, and the quick profile."""

import os

os.environ.setdefault("SEGEDU_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from segedu.runtime import seed_everything  # noqa: E402

# Unit tests run many tiny ops: one thread avoids the 2-core machine's thread contention.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    seed_everything(0)
    yield
