"""Synthetic shape scenes: the data every lesson trains on.

Each scene is a textured background with a few coloured shapes on it: disks,
squares, triangles, thin bars and rings (a ring's hole shows whatever lies
behind it). Shapes are rotated, scaled over more than 4x, may overlap (later
shapes are painted on top) and take random colours, so colour never gives the
class away: a model has to learn shape. Scene ``i`` is a pure function of
``(seed, i)``: nothing is stored, every scene is rendered on demand, many at
once, with tensor operations that run on the CPU or a GPU. Three variants
share one renderer: ``"semantic"`` gives ``(image, mask)``, ``"instance"``
gives ``(image, target)`` in torchvision's detection format, and
``"context"`` shows a harbour or a town, where the same vehicle is a "car"
or a "boat" depending on the water or the land far from it (lesson 08).

How the randomness works: every random number is an integer hash of
``(seed, index, field)`` (a counter-based generator, as in Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011), so a scene does not
depend on the batch it is rendered in, its position there, or the device.
The generator and the drawing primitives live in ``segedu.data.render``; this
module says what a scene is: which shapes, where, in what colours.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from segedu import validate
from segedu.data import render

__all__ = [
    "CLASSES",
    "CONTEXT_CLASSES",
    "VARIANTS",
    "MIN_VISIBLE_PIXELS",
    "VEHICLE_LENGTH",
    "VEHICLE_ASPECT",
    "VEHICLE_MARGIN",
    "VEHICLE_SPREAD",
    "REGION_OFFSET",
    "ShapesDataset",
]

CLASSES: tuple[str, ...] = ("background", "disk", "square", "triangle", "bar", "ring")
CONTEXT_CLASSES: tuple[str, ...] = ("background", "car", "boat", "square", "triangle")
VARIANTS: tuple[str, ...] = ("semantic", "instance", "context")

# An object left with fewer visible pixels than this (hidden behind others) is
# removed from the scene, so every instance target is large enough to learn from.
MIN_VISIBLE_PIXELS = 8

# Context variant (fractions of the image side): vehicles are large (long axis), elongated (short/long
# axis ratio) and stand on plain ground at least VEHICLE_MARGIN (plus up to VEHICLE_SPREAD more, where
# there is room) from the region of water or land, which lies beyond a border REGION_OFFSET from the centre.
VEHICLE_LENGTH = (0.36, 0.48)
VEHICLE_ASPECT = (0.60, 0.80)
VEHICLE_MARGIN = 0.15
VEHICLE_SPREAD = 0.3
REGION_OFFSET = (0.05, 0.2)

_CHUNK_PIXELS = 32 * 64 * 64  # scenes rendered together: 32 at 64 x 64 (see ShapesDataset.batch)
_MAX_SLOTS = 32  # max_objects cap: memory grows with it ([B, K, H, W] inside-tests)

# Random-number fields of object slots: see segedu.data.render.slot_uniform.
_VEHICLE_SLOT = 1000  # the two vehicle slots of the context variant get their own fields


# --------------------------------------------------------------------------- scene parameters
def _objects(u: torch.Tensor, scale: tuple[float, float]) -> dict[str, torch.Tensor]:
    """Shape parameters of the semantic scenes from uniforms ``u`` ``[B, K, 16]`` (float64).

    Every shape is described by the same numbers so that one vectorized
    inside-test draws them all (see ``segedu.data.render.inside``): centre ``(cx, cy)``, rotation
    ``(cos, sin)``, half-axes ``(a, b)`` and either a "round" test
    ``rin^2 <= (u/a)^2 + (v/b)^2 <= 1`` or a "polygon" test
    ``max(|u'| al + v' be, |v'| ga + v' de) <= 1``.
    """
    lo, hi = scale
    cls = 1 + (u[..., 0] * 5).floor().clamp(max=4)  # 1..5 = disk, square, triangle, bar, ring
    s = lo + (hi - lo) * u[..., 1]  # size: fraction of the image side
    theta = 2 * math.pi * u[..., 4]
    is_disk, is_square, is_tri, is_bar, is_ring = (cls == c for c in range(1, 6))

    bar_len = 0.15 + s  # bars are long whatever the scale ...
    bar_width = 0.04 + 0.025 * u[..., 9]  # ... and a few pixels wide (2.5-4 px at 64x64)
    a = torch.where(is_bar, bar_len / 2, torch.where(is_square, 0.4 * s, s / 2))
    b = torch.where(is_bar, bar_width / 2, torch.where(is_square, 0.4 * s, s / 2))
    # Triangle: inradius r = 0.275 s (circumradius 0.55 s); its three half-planes are
    # -v <= r and +-u cos30 + v sin30 <= r.
    a = torch.where(is_tri, 0.275 * s, a)
    b = torch.where(is_tri, 0.275 * s, b)
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    alpha = torch.where(is_tri, math.cos(math.pi / 6) * one, one)
    beta = torch.where(is_tri, 0.5 * one, zero)
    gamma = torch.where(is_tri, zero, one)
    delta = torch.where(is_tri, -one, zero)
    rin = torch.where(is_ring, 0.45 + 0.2 * u[..., 8], zero)
    # Keep the centre far enough in that at most a sliver is cut off by the border.
    reach = torch.maximum(a, b) * torch.where(is_tri, 2.0 * one, one) * 0.8
    reach = reach.clamp(max=0.5)
    cx = reach + (1 - 2 * reach) * u[..., 2]
    cy = reach + (1 - 2 * reach) * u[..., 3]
    return dict(
        label=cls, cx=cx, cy=cy, cos=torch.cos(theta), sin=torch.sin(theta), a=a, b=b,
        round=is_disk | is_ring, rin2=rin * rin, alpha=alpha, beta=beta, gamma=gamma, delta=delta,
        colour=u[..., 5:8],
    )


def _contrast(colour: torch.Tensor, behind: torch.Tensor, min_diff: float = 0.3) -> torch.Tensor:
    """Push an object colour away from the background colour behind it.

    ``colour``, ``behind``: ``[B, K, 3]``. Colours stay random and independent of
    the class; only a colour that nearly matches its surroundings (no visible
    edge, nothing to learn) is replaced by one clearly brighter or darker.
    """
    close = (colour - behind).abs().amax(-1, keepdim=True) < min_diff
    away = torch.where(behind > 0.5, behind - 0.4, behind + 0.4)
    return torch.where(close, away, colour)


def _vehicles(u, phi, p0x, p0y):
    """Vehicle ellipses of the context variant, on the ground side of the border.

    ``u`` ``[B, 2, 16]`` uniforms, ``phi`` ``[B]`` the angle of the border's
    normal n (pointing into the region), ``(p0x, p0y)`` a point on the border.
    The centre is ``p0 + d n + t tau`` with ``d < 0`` (the ground side):
    ``|d|`` keeps the whole ellipse ``VEHICLE_MARGIN`` (+ up to
    ``VEHICLE_SPREAD``) away from the border, ``t`` is drawn from the
    interval of positions that keep it inside the image. Returns the shape
    parameters (as ``_objects``) and ``feasible`` bool ``[B, 2]`` (False: no
    room; the vehicle is left out).
    """
    lo, hi = VEHICLE_LENGTH
    a = (lo + (hi - lo) * u[..., 0]) / 2
    b = a * (VEHICLE_ASPECT[0] + (VEHICLE_ASPECT[1] - VEHICLE_ASPECT[0]) * u[..., 1])
    dev = (2 * u[..., 2] - 1) * math.pi / 6  # long axis within 30 degrees of the border's direction
    theta = phi[:, None] + math.pi / 2 + dev
    c, s = torch.cos(theta), torch.sin(theta)
    reach_n = torch.sqrt((a * torch.sin(dev)) ** 2 + (b * torch.cos(dev)) ** 2)  # extent across the border
    ex = torch.sqrt((a * c) ** 2 + (b * s) ** 2)  # extents along x and y
    ey = torch.sqrt((a * s) ** 2 + (b * c) ** 2)
    nx, ny = torch.cos(phi)[:, None], torch.sin(phi)[:, None]
    tx, ty = -ny, nx  # tau, along the border

    def interval(d):
        qx, qy = p0x[:, None] + d * nx, p0y[:, None] + d * ny
        t_lo = torch.full_like(d, -math.inf)
        t_hi = torch.full_like(d, math.inf)
        for q, t, e in ((qx, tx, ex), (qy, ty, ey)):
            flat = t.abs() < 1e-9  # border parallel to this axis: the coordinate is fixed
            t_safe = torch.where(flat, torch.ones_like(t), t)
            t1, t2 = (e - q) / t_safe, (1 - e - q) / t_safe
            ok = (q >= e) & (q <= 1 - e)
            t_lo = torch.maximum(t_lo, torch.where(flat, torch.where(ok, -math.inf, math.inf), torch.minimum(t1, t2)))
            t_hi = torch.minimum(t_hi, torch.where(flat, torch.where(ok, math.inf, -math.inf), torch.maximum(t1, t2)))
        return t_lo, t_hi

    near = -(reach_n + VEHICLE_MARGIN)  # negative: away from the region, onto the ground
    far = -(reach_n + VEHICLE_MARGIN + VEHICLE_SPREAD * u[..., 3])
    lo_far, hi_far = interval(far)
    lo_near, hi_near = interval(near)
    use_far = lo_far <= hi_far  # prefer a random distance; fall back to the closest allowed
    d = torch.where(use_far, far, near)
    t_lo, t_hi = torch.where(use_far, lo_far, lo_near), torch.where(use_far, hi_far, hi_near)
    feasible = t_lo <= t_hi
    t = torch.where(feasible, t_lo + (t_hi - t_lo) * u[..., 4], torch.zeros_like(d))
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    geo = dict(
        label=zero, cx=p0x[:, None] + d * nx + t * tx, cy=p0y[:, None] + d * ny + t * ty, cos=c, sin=s, a=a, b=b,
        round=torch.ones_like(a, dtype=torch.bool), rin2=zero, alpha=one, beta=zero, gamma=one, delta=zero,
        colour=u[..., 5:8],
    )
    return geo, feasible


class ShapesDataset(Dataset):
    """Synthetic segmentation scenes, rendered on demand from ``(seed, index)``.

    Args:
        length: number of scenes (indices ``0 .. length - 1``).
        size: image side in pixels (square images).
        seed: picks the scenes; different seeds give different scenes.
        variant: ``"semantic"``, ``"instance"`` or ``"context"`` (see below).
        device: where ``batch`` renders (``"cpu"``, ``"cuda"``, ...).
        min_objects, max_objects: how many shapes a scene holds (inclusive).
        scale: (smallest, largest) object size ``s`` as a fraction of the
            image side, drawn uniformly: the diameter of a disk or ring; a
            square's side is 0.8 s, a triangle's circumradius 0.55 s; bars are
            ``0.15 + s`` long and 4-6.5 % of the side wide.
        noise: standard deviation of the (uniform) pixel noise.

    Items:
        semantic: ``(image float32 [3, H, W] in [0, 1], mask int64 [H, W])``
            with classes ``CLASSES``.
        instance: ``(image, target)``, ``target`` a dict as torchvision's
            detection models take it: ``boxes`` float32 ``[N, 4]`` (x1, y1, x2,
            y2) with x2, y2 EXCLUSIVE, i.e. ``torchvision.ops.masks_to_boxes +
            1`` on x2 and y2, so every box has a positive width and height;
            ``labels`` int64 ``[N]`` (>= 1, ``CLASSES``); ``masks`` uint8
            ``[N, H, W]``, the visible pixels of each object, never
            overlapping, in drawing order (bottom first). Index ``i`` is the
            same scene as the semantic variant's index ``i``; painting the
            masks with their labels gives its mask exactly.
        context: ``(image, mask)`` with classes ``CONTEXT_CLASSES``. A
            scene is a harbour or a town (even odds). A straight border at a
            random angle, ``REGION_OFFSET`` of the side from the centre, cuts
            off a region of water (smooth waves) in a harbour or of land
            (grainy speckle) in a town; the rest is plain ground (one flat
            colour: the quay or the road). One or two vehicles (ellipses
            ``VEHICLE_LENGTH`` of the image side long, their width
            ``VEHICLE_ASPECT`` of that, drawn last so never hidden, long axis
            within 30 degrees of the border) stand on the ground at least
            ``VEHICLE_MARGIN`` of the side away from the region: in a harbour
            they are "boats", in a town "cars". Vehicles and ground look the
            same in both (same shapes, same colour distributions), so only the
            region - at least 15 % of the side away - tells them apart: a model has
            to look far. Squares and triangles (the distractors) go anywhere.
            Region and ground are background; ``regions(idx)`` returns them.

    Objects hidden behind others down to fewer than ``MIN_VISIBLE_PIXELS``
    pixels are removed from the scene (image, mask and target alike).
    ``dataset[i]`` equals ``dataset.batch([i])`` unbatched; use ``batch`` to
    render many scenes at once (much faster than a DataLoader over items).
    """

    def __init__(
        self,
        length: int,
        size: int = 64,
        seed: int = 0,
        variant: str = "semantic",
        device: str | torch.device = "cpu",
        *,
        min_objects: int = 1,
        max_objects: int = 4,
        scale: tuple[float, float] = (0.12, 0.5),
        noise: float = 0.06,
    ):
        self.length = validate.integer(length, "length", minimum=0)
        self.size = validate.positive_int(size, "size")
        self.seed = validate.integer(seed, "seed")
        self.variant = validate.choice(variant, "variant", VARIANTS)
        self.device = validate.torch_device(device)
        self.min_objects = validate.integer(min_objects, "min_objects", minimum=0)
        self.max_objects = validate.integer(max_objects, "max_objects", minimum=1, maximum=_MAX_SLOTS)
        if self.min_objects > self.max_objects:
            raise ValueError(
                f"min_objects must be <= max_objects, got min_objects={min_objects} > max_objects={max_objects}"
            )
        self.scale = _check_scale(scale)
        self.noise = validate.number(noise, "noise", minimum=0.0, maximum=1.0)
        self.classes = CONTEXT_CLASSES if variant == "context" else CLASSES
        self.num_classes = len(self.classes)
        # Pixel centres in [0, 1]: scenes are defined in image-relative units, so the
        # same index at another size is the same scene at another resolution.
        self._xs = (torch.arange(self.size, device=self.device, dtype=torch.float32) + 0.5) / self.size

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(length={self.length}, size={self.size}, seed={self.seed}, "
            f"variant={self.variant!r}, device={str(self.device)!r}, classes={self.num_classes})"
        )

    def __getitem__(self, i):
        images, targets = self.batch([validate.integer(i, "index")])
        return images[0], targets[0]

    # ------------------------------------------------------------------ public
    def batch(self, indices):
        """Render the scenes ``indices`` at once on ``self.device``.

        Args:
            indices: ints (a list, range, NumPy array or 1-D integer tensor);
                negative indices count from the end, like a list.

        Returns:
            semantic / context: ``(images float32 [B, 3, H, W], masks int64 [B, H, W])``;
            instance: ``(images, targets)`` with a list of ``B`` target dicts.
        """
        idx = self._indices(indices)
        images, targets = [], []
        # On a CPU, chunks of a few scenes keep the [B, K, H, W] temporaries in the
        # cache; a GPU is fastest with the whole batch at once. Same result either way.
        step = max(1, _CHUNK_PIXELS // (self.size * self.size)) if self.device.type == "cpu" else max(1, len(idx))
        for chunk in idx.split(step) or (idx,):
            if self.variant == "context":
                image, top, labels, _ = self._render_context(chunk)
            else:
                image, top, labels = self._render_semantic(chunk)
            images.append(image)
            if self.variant == "instance":
                targets.extend(self._targets(top, labels))
            else:
                targets.append(render.gather_slots(labels[:, None, :], top)[:, 0])
        images = torch.cat(images) if len(images) > 1 else images[0]
        if self.variant == "instance":
            return images, targets
        return images, torch.cat(targets) if len(targets) > 1 else targets[0]

    def regions(self, indices) -> torch.Tensor:
        """Context variant only: int64 ``[B, H, W]``, 0 = ground, 1 = land, 2 = water (as car and boat)."""
        if self.variant != "context":
            raise ValueError(f"regions() needs variant='context', this dataset has variant={self.variant!r}")
        return self._render_context(self._indices(indices))[3]

    # ------------------------------------------------------------------ internals
    def _indices(self, indices) -> torch.Tensor:
        if isinstance(indices, torch.Tensor):
            validate.tensor(indices, "indices", (0, 1), dtype="integer")
            idx = indices.reshape(-1).to(device=self.device, dtype=torch.int64)
        else:
            try:
                values = list(indices)
            except TypeError:
                raise TypeError(
                    f"indices must be a sequence of ints, got {type(indices).__name__} "
                    f"{str(indices)[:60]}"
                ) from None
            values = [validate.integer(v, f"indices[{k}]") for k, v in enumerate(values)]
            idx = torch.tensor(values, dtype=torch.int64, device=self.device)
        bad = (idx < -self.length) | (idx >= self.length)
        if bool(bad.any()):
            first = int(idx[bad][0])
            raise IndexError(f"index {first} is out of range for a ShapesDataset of length {self.length}")
        return torch.where(idx < 0, idx + self.length, idx)

    def _count(self, keys: torch.Tensor) -> torch.Tensor:
        """Number of objects per scene, uniform in [min_objects, max_objects]: int64 ``[B]``."""
        u = render.uniform(keys, torch.tensor([0], device=keys.device))[:, 0]
        span = self.max_objects - self.min_objects + 1
        return self.min_objects + (u * span).floor().long().clamp(max=span - 1)

    def _background(self, keys, u):
        """Gradient + stripes + blobs: float32 ``[B, 3, H, W]`` and the colour function at points."""
        xs = self._xs
        c1, c2 = u[:, 1:4], u[:, 4:7]
        phi = 2 * math.pi * u[:, 7]
        g = 0.2 + 0.6 * u[:, 8]  # gradient strength: colour goes from ~c1 to ~c2 across the image
        gx, gy = g * torch.cos(phi), g * torch.sin(phi)

        def colour_at(px, py):  # [B, K] points -> [B, K, 3] smooth background colour
            t = (px - 0.5) * gx[:, None] + (py - 0.5) * gy[:, None] + 0.5
            return c1[:, None] + (c2 - c1)[:, None] * t[..., None]

        tx = ((xs.double()[None] - 0.5) * gx[:, None]).float()
        ty = ((xs.double()[None] - 0.5) * gy[:, None] + 0.5).float()
        t = tx[:, None, None, :] + ty[:, None, :, None]  # [B, 1, H, W]
        c1f, dcf = c1.float()[:, :, None, None], (c2 - c1).float()[:, :, None, None]
        bg = c1f + dcf * t
        # Texture: oriented stripes and a soft blob pattern, in a random colour.
        k = 2 * math.pi * (6 + 10 * u[:, 9])  # 6-16 stripes per image side
        ang = math.pi * u[:, 10]
        stripes = render.wave(
            k * torch.cos(ang), k * torch.sin(ang), 2 * math.pi * u[:, 11], 0.06 + 0.1 * u[:, 12], xs, xs
        )
        fx, fy = 2 * math.pi * (1 + 3 * u[:, 13]), 2 * math.pi * (1 + 3 * u[:, 14])
        bx, _ = render.sin_cos(fx[:, None] * xs.double()[None] + 2 * math.pi * u[:, 15, None])
        by, _ = render.sin_cos(fy[:, None] * xs.double()[None] + 2 * math.pi * u[:, 16, None])
        bx = bx * (0.12 * u[:, 17, None]).float()
        blobs = bx[:, None, None, :] * by[:, None, :, None]
        tex_colour = (2 * u[:, 18:21] - 1).float()[:, :, None, None]
        return bg + (stripes + blobs) * tex_colour, colour_at

    def _compose(self, bg, top, colours, keys):
        """Objects over the background, plus noise, clipped to [0, 1]: float32 ``[B, 3, H, W]``."""
        obj = render.gather_slots(colours.float().transpose(1, 2), top)
        image = torch.where(top[:, None] > 0, obj, bg)
        if self.noise > 0:
            # Uniform pixel noise of standard deviation self.noise: three 10-bit
            # uniforms (one per channel) from one 32-bit hash per pixel.
            h = render.pixel_uniform(keys, self.size, self.size, stream=1)
            step = self.noise * math.sqrt(12) / 1024
            for c in range(3):
                image[:, c] += (((h >> (10 * c)) & 1023).float() - 511.5) * step
        return image.clamp_(0, 1)

    def _render_semantic(self, idx):
        keys = render.scene_keys(self.seed, idx)
        K = self.max_objects
        u_bg = render.uniform(keys, torch.arange(64, device=keys.device))
        geo = _objects(render.slot_uniform(keys, K, render.SLOT_STRIDE), self.scale)
        bg, colour_at = self._background(keys, u_bg)
        colours = _contrast(geo.pop("colour"), colour_at(geo["cx"], geo["cy"]))
        labels = geo.pop("label").long()
        active = torch.arange(K, device=keys.device)[None] < self._count(keys)[:, None]
        geo32 = {k: v.float() if v.is_floating_point() else v for k, v in geo.items()}
        inside = render.inside(geo32, self._xs, self._xs)
        top, active = render.paint(inside, active, MIN_VISIBLE_PIXELS)
        return self._compose(bg, top, colours, keys), top, labels * active

    def _render_context(self, idx):
        keys = render.scene_keys(self.seed, idx)
        dev, xs = keys.device, self._xs.double()
        u = render.uniform(keys, torch.arange(64, device=dev))
        # The region (water or land) lies beyond a straight border: points p with (p - p0) . n > 0,
        # p0 = centre + h n. The rest of the scene is plain ground (the quay or the road).
        phi = 2 * math.pi * u[:, 21]
        nx, ny = torch.cos(phi), torch.sin(phi)
        h = REGION_OFFSET[0] + (REGION_OFFSET[1] - REGION_OFFSET[0]) * u[:, 22]
        p0x, p0y = 0.5 + h * nx, 0.5 + h * ny
        is_water = u[:, 24] < 0.5  # the scene: a harbour (water) or a town (land)
        side_x = ((xs[None] - p0x[:, None]) * nx[:, None]).float()
        side_y = ((xs[None] - p0y[:, None]) * ny[:, None]).float()
        region = (side_x[:, None, :] + side_y[:, :, None]) > 0  # [B, H, W]

        # Vehicles: one or two, on the ground side, at least VEHICLE_MARGIN from the region.
        count = self._count(keys).clamp(min=1)
        two = (count >= 2) & (u[:, 25] < 0.7)
        uv = render.slot_uniform(keys, 2, render.SLOT_STRIDE, _VEHICLE_SLOT)
        k = torch.arange(2, device=dev, dtype=uv.dtype)
        uv[..., 4] = torch.where(two[:, None], (k + uv[..., 4]) / 2, uv[..., 4])  # two: one per half of the border
        veh, feasible = _vehicles(uv, phi, p0x, p0y)
        veh_active = torch.stack([torch.ones_like(two), two], dim=1) & feasible
        veh["label"] = torch.where(is_water, 2.0, 1.0)[:, None].expand(-1, 2)  # 1 = car (land), 2 = boat (water)

        # Distractors: squares and triangles anywhere, below the vehicles.
        kd = self.max_objects - 1
        ud = render.slot_uniform(keys, kd, render.SLOT_STRIDE)
        ud[..., 0] = 0.2 + 0.4 * ud[..., 0]  # semantic classes 2 (square) and 3 (triangle) only
        dis = _objects(ud, self.scale)
        dis["label"] = dis["label"] + 1  # square 3, triangle 4 in CONTEXT_CLASSES
        dis_active = torch.arange(kd, device=dev)[None] < (count - veh_active.sum(1))[:, None]

        geo = {k: torch.cat([dis[k], veh[k]], dim=1) for k in dis}
        active = torch.cat([dis_active, veh_active], dim=1)

        # Colours and textures: ground is flat, land grainy (2x2 speckle), water has smooth waves.
        # Mid-range colours (0.15-0.85) so that clipping to [0, 1] never flattens the textures.
        ground_c, region_c = 0.15 + 0.7 * u[:, 27:30], 0.15 + 0.7 * u[:, 30:33]
        centre_side = (geo["cx"] - p0x[:, None]) * nx[:, None] + (geo["cy"] - p0y[:, None]) * ny[:, None]
        behind = torch.where((centre_side > 0)[..., None], region_c[:, None], ground_c[:, None])
        colours = _contrast(geo.pop("colour"), behind)
        grain = render.pixel_uniform(keys, self.size, self.size, stream=2, block=2)
        grain = ((grain & 1023).float() / 1023 - 0.5) * (0.3 + 0.2 * u[:, 33]).float()[:, None, None]
        land = region_c.float()[:, :, None, None] + grain[:, None]
        k1 = 2 * math.pi * (3 + 4 * u[:, 34])
        rows, _ = render.sin_cos(k1[:, None] * xs[None] + 2 * math.pi * u[:, 35, None])
        swell = rows.float()[:, None, :, None] * (0.06 + 0.06 * u[:, 36]).float()[:, None, None, None]
        k2 = 2 * math.pi * (6 + 4 * u[:, 37])
        slant = 0.3 * (2 * u[:, 38] - 1)  # ripples a little off horizontal
        ripple = render.wave(k2 * slant, k2, 2 * math.pi * u[:, 39], 0.04 + 0.04 * u[:, 40], self._xs, self._xs)
        wave_colour = (0.5 + 0.5 * u[:, 41:44]).float()[:, :, None, None]
        water_img = region_c.float()[:, :, None, None] + (swell + ripple) * wave_colour
        texture = torch.where(is_water[:, None, None, None], water_img, land)
        bg = torch.where(region[:, None], texture, ground_c.float()[:, :, None, None])

        labels = geo.pop("label").long()
        geo32 = {k: v.float() if v.is_floating_point() else v for k, v in geo.items()}
        inside = render.inside(geo32, self._xs, self._xs)
        top, active = render.paint(inside, active, MIN_VISIBLE_PIXELS)
        kind = torch.where(is_water, 2, 1)[:, None, None]
        return self._compose(bg, top, colours, keys), top, labels * active, region.long() * kind

    def _targets(self, top: torch.Tensor, labels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """torchvision detection targets from the painted slots (see the class docstring)."""
        B, K = labels.shape
        onehot = top[:, None] == torch.arange(1, K + 1, device=top.device).view(1, K, 1, 1)  # [B,K,H,W]
        cols, rows = onehot.any(2), onehot.any(3)  # [B, K, W], [B, K, H]
        W, H = cols.shape[-1], rows.shape[-1]
        x1 = cols.float().argmax(-1)
        x2 = W - cols.flip(-1).float().argmax(-1)
        y1 = rows.float().argmax(-1)
        y2 = H - rows.flip(-1).float().argmax(-1)
        boxes = torch.stack([x1, y1, x2, y2], dim=-1).float()
        present = labels > 0
        targets = []
        for b in range(B):
            keep = present[b].nonzero()[:, 0]
            targets.append(
                {"boxes": boxes[b, keep], "labels": labels[b, keep], "masks": onehot[b, keep].to(torch.uint8)}
            )
        return targets


# --------------------------------------------------------------------------- argument checks
def _check_scale(scale) -> tuple[float, float]:
    """``(smallest, largest)`` object size as fractions of the side: ``0 < smallest <= largest <= 1``."""
    if not isinstance(scale, (tuple, list)):
        raise TypeError(f"scale must be a pair of floats (smallest, largest), got {type(scale).__name__} {scale!r}")
    if len(scale) != 2:
        raise ValueError(f"scale must be a pair of floats (smallest, largest), got {len(scale)} values {scale!r}")
    lo, hi = (validate.number(s, "scale") for s in scale)
    if not (0 < lo <= hi <= 1):
        raise ValueError(f"scale must satisfy 0 < smallest <= largest <= 1, got {scale!r}")
    return lo, hi
