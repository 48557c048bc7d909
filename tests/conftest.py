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


# Stages that re-run the lessons (browser, student release) share `make test`'s result cache; unit tests
# must train for real (tests/test_cache.py turns it on for itself).
_LESSON_STAGES = ("tests/browser", "tests/coursework")


@pytest.fixture(autouse=True)
def _no_result_cache(request, monkeypatch):
    if not any(stage in request.node.nodeid for stage in _LESSON_STAGES):
        monkeypatch.delenv("SEGEDU_CACHE", raising=False)
    yield
