"""Shared test settings: CPU, few threads, a fixed seed, and the quick profile."""

import os

os.environ.setdefault("SEGEDU_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

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


def _overfit_miou(model: torch.nn.Module, steps: int) -> float:
    """Train ``model`` (3 classes) with Adam for ``steps`` full-batch steps on 4 fixed 32x32 scenes of two
    squares each, and return its mIoU on those same scenes: the "can it memorise 4 images" test."""
    from segedu.metrics import mean_iou

    torch.manual_seed(0)
    masks = torch.zeros(4, 32, 32, dtype=torch.long)
    for i in range(4):
        masks[i, 4 + i : 16 + i, 3 + 2 * i : 15 + 2 * i] = 1
        masks[i, 18 : 30 - i, 16:28] = 2
    images = torch.stack([(masks == c).float() for c in (1, 2, 0)], dim=1) + 0.1 * torch.randn(4, 3, 32, 32)
    model = model()  # built after the data, under the same seed as before this helper existed
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(images), masks).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        return float(mean_iou(model(images), masks, num_classes=3))


@pytest.fixture
def overfit_miou():
    """``overfit_miou(build, steps) -> mIoU``: see ``_overfit_miou`` (``build()`` makes the model)."""
    return _overfit_miou
