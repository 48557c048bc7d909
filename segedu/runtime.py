"""Where code runs and how big the experiments are.

* ``device()`` picks CUDA, then Apple's MPS, then the CPU.
* ``seed_everything(seed)`` makes a run repeatable (Python, NumPy, torch);
  ``rng_state()`` / ``set_rng_state(state)`` save and restore those generators
  (``segedu.cache`` restores them after reusing a training run).
* ``profile()`` returns every size a lesson uses. ``quick`` runs the whole
  course in minutes on a 2-core laptop (and in CI); ``full`` is the thorough
  version for a GPU. ``SEGEDU_PROFILE=quick|full`` overrides the default.

Lessons never hard-code a size: they read it from the profile, so one
notebook is fast in CI and thorough on a GPU.
"""

from __future__ import annotations

import dataclasses
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from segedu import validate

__all__ = ["ENV_VAR", "device", "seed_everything", "rng_state", "set_rng_state", "Profile", "PROFILES", "profile"]

ENV_VAR = "SEGEDU_PROFILE"


def device() -> torch.device:
    """The best available device: CUDA, then MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (all devices)."""
    seed = validate.integer(seed, "seed")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, NumPy and torch generator states, as tensors and plain values (``weights_only`` loads them)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_version": version,
        "python_gauss": gauss,
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_rest": [name, pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Undo of ``rng_state``."""
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    name, pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state((name, state["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class Profile:
    """Sizes for one run of the course. Read by every lesson.

    Attributes are grouped by what they size; every lesson documents which
    ones it reads.
    """

    name: str
    # data
    image_size: int  # side of the synthetic scenes (pixels)
    batch_size: int  # training mini-batch
    train_images: int  # distinct training scenes (indices 0..train_images-1)
    val_images: int  # validation scenes (a disjoint seed)
    # training
    train_steps: int  # optimizer steps for a lesson's main model
    ablation_steps: int  # steps for each model in a comparison or ablation
    lr: float  # Adam learning rate used by the lessons
    # models
    width: int  # base channel width of the small models
    # autoencoders (lesson 01)
    ae_steps: int
    ae_bottleneck: int
    # dense CRF (lesson 07)
    crf_size: int  # side of the real photo the CRF refines
    crf_iterations: int
    # instance segmentation (lesson 09)
    det_steps: int  # Mask R-CNN optimizer steps
    det_batch_size: int  # Mask R-CNN mini-batch (more, smaller steps train a detector faster on a CPU)

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        image_size=64,
        batch_size=16,
        train_images=2048,
        val_images=64,
        train_steps=300,
        ablation_steps=200,
        lr=3e-3,
        width=16,
        ae_steps=300,
        ae_bottleneck=16,
        crf_size=160,
        crf_iterations=5,
        det_steps=600,
        det_batch_size=8,
    ),
    "full": Profile(
        name="full",
        image_size=128,
        batch_size=32,
        train_images=20000,
        val_images=512,
        train_steps=3000,
        ablation_steps=2000,
        lr=1e-3,
        width=32,
        ae_steps=3000,
        ae_bottleneck=32,
        crf_size=500,
        crf_iterations=10,
        det_steps=3000,
        det_batch_size=16,
    ),
}


def profile(name: str | None = None) -> Profile:
    """The sizes a lesson uses.

    ``name`` wins, then the ``SEGEDU_PROFILE`` environment variable, then the
    default: ``full`` when CUDA is available, ``quick`` otherwise.
    """
    if name is None:
        name = os.environ.get(ENV_VAR) or ("full" if torch.cuda.is_available() else "quick")
    if not isinstance(name, str):
        raise TypeError(f"profile name must be a str ({', '.join(sorted(PROFILES))}), got {type(name).__name__}")
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r} (from argument or ${ENV_VAR}); "
            f"valid profiles: {', '.join(sorted(PROFILES))}"
        )
    return PROFILES[key]
