"""The renderer under ``segedu.data.shapes``: counter-based random numbers and pixel primitives.

Two ideas, both chosen so that a scene is bit-identical whatever batch renders it, at whatever
position, on whatever device:

* **Random numbers** are integer hashes of ``(seed, index, field)`` - a counter-based generator, as in
  Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011. There is no generator state
  to advance, so scene ``i`` never depends on the scenes rendered before it. ``scene_keys`` turns
  ``(seed, index)`` into one key per scene; ``uniform``, ``slot_uniform`` and ``pixel_uniform`` draw
  the numbers of a scene, of its object slots and of its pixels from that key.
* **Drawing** works on every object slot at once, as tensors: ``inside`` tests every pixel against
  every shape (bool ``[B, K, H, W]``), ``paint`` keeps the top-most object at each pixel (the
  painter's algorithm), ``gather_slots`` looks a per-object value up per pixel, and ``wave`` draws a
  sine grating from separable terms. Only exactly-rounded operations touch pixels, and
  transcendentals run in float64 (``sin_cos``) before rounding to float32.

The scenes themselves - which shapes, where, in what colours - are defined in ``segedu.data.shapes``.
"""

from __future__ import annotations

import torch

__all__ = [
    "SLOT_BASE",
    "SLOT_STRIDE",
    "mix32",
    "scene_keys",
    "uniform",
    "slot_uniform",
    "pixel_uniform",
    "inside",
    "paint",
    "gather_slots",
    "sin_cos",
    "wave",
]

# Random-number fields: scene-level values use fields 0..63, object slot k uses 64 + 16 k + j.
SLOT_BASE, SLOT_STRIDE = 64, 16

_M32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # < 2**31, so x * _MUL stays inside int64 for any 32-bit x


# --------------------------------------------------------------------------- random numbers
def mix32(x):
    """A 32-bit integer hash (works on Python ints and int64 tensors).

    Two xor-shift-multiply rounds: every input bit flips about half of the output
    bits. Only integer ops, so it gives the same bits on every device.
    """
    x = ((x >> 16) ^ x) * _MUL & _M32
    x = ((x >> 16) ^ x) * _MUL & _M32
    return (x >> 16) ^ x


def scene_keys(seed: int, index: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per scene from ``(seed, index)``: int64 ``[B]`` -> int64 ``[B]``."""
    s = seed % 2**64
    k0 = mix32(mix32(s & _M32) ^ (s >> 32))
    return mix32(mix32((index & _M32) ^ k0) ^ (index >> 32))


def uniform(keys: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
    """Uniform numbers in [0, 1), float64 ``[B, F]``, one per (scene key, field)."""
    h = mix32(keys[:, None] ^ mix32(fields + 0x3C6EF372)[None, :])
    return h.to(torch.float64) * 2.0**-32


def slot_uniform(keys: torch.Tensor, slots: int, fields: int, first_slot: int = 0) -> torch.Tensor:
    """Uniform numbers for ``slots`` object slots: float64 ``[B, slots, fields]``."""
    k = torch.arange(first_slot, first_slot + slots, device=keys.device)
    f = SLOT_BASE + SLOT_STRIDE * k[:, None] + torch.arange(fields, device=keys.device)
    return uniform(keys, f.reshape(-1)).view(-1, slots, fields)


def pixel_uniform(keys: torch.Tensor, height: int, width: int, stream: int, block: int = 1):
    """Per-pixel random bits, int64 ``[B, H, W]``, constant over ``block x block`` cells."""
    dev = keys.device
    ys = torch.arange(height, device=dev) // block
    xs = torch.arange(width, device=dev) // block
    cell = ys[:, None] * 65536 + xs[None, :] + stream * 0x1000000  # distinct per cell and stream
    return mix32(keys[:, None, None] ^ mix32(cell)[None])


# --------------------------------------------------------------------------- rendering
def inside(geo: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Inside-tests of every object slot: bool ``[B, K, H, W]``.

    ``geo`` holds float32 ``[B, K]`` parameters (the shape description of
    ``segedu.data.shapes``: centre ``cx, cy``, rotation ``cos, sin``, half-axes
    ``a, b``, ``round`` with ``rin2`` or the polygon's ``alpha, beta, gamma,
    delta``), ``xs``/``ys`` the pixel centres in [0, 1]. The rotated, rescaled
    coordinates ``u' = (dx cos + dy sin) / a`` and ``v' = (dy cos - dx sin) / b``
    are sums of a row term and a column term, so the per-pixel work is one
    addition each. Only exactly-rounded operations (+, -, *, abs, max, compare)
    touch pixels, which keeps a scene bit-identical in any batch.
    """
    p = {k: v[:, :, None, None] for k, v in geo.items()}
    dx = xs.view(1, 1, 1, -1) - p["cx"]  # [B, K, 1, W]
    dy = ys.view(1, 1, -1, 1) - p["cy"]  # [B, K, H, 1]
    u = dx * (p["cos"] / p["a"]) + dy * (p["sin"] / p["a"])
    v = dy * (p["cos"] / p["b"]) - dx * (p["sin"] / p["b"])
    r2 = u * u + v * v
    round_in = (r2 <= 1) & (r2 >= p["rin2"])
    # max(t1, t2) <= 1, written as two comparisons: cheaper on bytes than a float max.
    poly_in = (u.abs() * p["alpha"] + v * p["beta"] <= 1) & (v.abs() * p["gamma"] + v * p["delta"] <= 1)
    return torch.where(p["round"], round_in, poly_in)


def paint(inside: torch.Tensor, active: torch.Tensor, min_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Painter's algorithm: the top-most object at every pixel.

    ``inside`` bool ``[B, K, H, W]``, ``active`` bool ``[B, K]``. Returns ``top``
    int64 ``[B, H, W]`` (0 = no object, ``k + 1`` = slot ``k``; later slots are
    painted over earlier ones) and the final ``active`` with objects that kept
    fewer than ``min_pixels`` visible pixels switched off
    (``segedu.data.shapes.MIN_VISIBLE_PIXELS``).
    """
    B, K = active.shape
    order = torch.arange(1, K + 1, device=inside.device, dtype=torch.uint8).view(1, K, 1, 1)

    def top_of(act):
        return ((inside & act[:, :, None, None]).to(torch.uint8) * order).amax(1).long()

    top = top_of(active)
    offset = (K + 1) * torch.arange(B, device=top.device).view(B, 1, 1)
    counts = torch.bincount((top + offset).view(-1), minlength=B * (K + 1)).view(B, K + 1)[:, 1:]
    keep = active & (counts >= min_pixels)
    if bool((keep != active).any()):
        # Removing a hidden object only uncovers pixels of the objects below it,
        # so every object that stays keeps at least min_pixels pixels.
        top = top_of(keep)
    return top, keep


def gather_slots(values: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Per-pixel lookup of a per-object value: ``values`` ``[B, C, K]``, ``top`` ``[B, H, W]``
    (0 = none) -> ``[B, C, H, W]`` (0 where no object)."""
    B, C, _ = values.shape
    padded = torch.cat([values.new_zeros(B, C, 1), values], dim=2)
    idx = top.flatten(1)[:, None].expand(B, C, -1)
    return padded.gather(2, idx).view(B, C, *top.shape[1:])


def sin_cos(angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sin and cos in float64, returned as float32 (so every device and batch rounds alike)."""
    return torch.sin(angle).float(), torch.cos(angle).float()


def wave(kx, ky, phase, amp, xs, ys):
    """``amp * sin(kx x + ky y + phase)`` as ``[B, 1, H, W]`` from separable terms.

    ``sin(A + B) = sin A cos B + cos A sin B`` with ``A`` depending on x only and
    ``B`` on y only: transcendentals run on ``[B, W]`` and ``[B, H]`` (in float64),
    the image-sized work is two products and a sum.
    """
    sa, ca = sin_cos(kx[:, None] * xs.double()[None] + phase[:, None])
    sb, cb = sin_cos(ky[:, None] * ys.double()[None])
    amp = amp.float()[:, None, None, None]
    sa, ca = (amp * t[:, None, None, :] for t in (sa, ca))
    return sa * cb[:, None, :, None] + ca * sb[:, None, :, None]
