"""Camera rays, ray-volume intersections and samples along rays (NeRF-style).

A ray is ``o + t d`` for ``t >= 0``; ``t`` is in units of ``|d|`` (so with un-normalised
directions from :func:`pixel_rays`, ``t`` is view-space depth).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomkit.cameras import Cameras

_MIN_CDF_SPAN = 1e-5


class Rays(NamedTuple):
    """World-space rays.

    Attributes:
        origins: (N, P, 3) camera centres, repeated per ray (may be an expanded view).
        directions: (N, P, 3) unit vectors, or (normalize=False) vectors whose view-space z is 1.
    """

    origins: torch.Tensor
    directions: torch.Tensor


def pixel_grid(
    height: int,
    width: int,
    pixel_offset: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Pixel coordinates of a full image, row-major (v outer, u inner).

    Args:
        height, width: image size H, W.
        pixel_offset: added to the integer column/row indices. 0.5 gives true pixel centres in
            our convention (top-left pixel centre at (0.5, 0.5)); it also reproduces IDR/VolSDF,
            whose integer pixel coordinates of their OpenCV K are ours + 0.5 through the K
            that ``from_idr`` shifts by +0.5. 0.0 reproduces originals that shoot rays through
            integer coordinates of a K taken as ours unchanged (original NeRF, ``cx = W/2``).
        dtype, device: of the result.

    Returns:
        (H * W, 2) (u, v); entry ``i * W + j`` is ``(j + offset, i + offset)``.
    """
    rows = torch.arange(height, dtype=dtype, device=device) + pixel_offset
    cols = torch.arange(width, dtype=dtype, device=device) + pixel_offset
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack((u, v), -1).reshape(-1, 2)


def pixel_rays(
    cameras: Cameras,
    uv: torch.Tensor | None = None,
    pixel_offset: float = 0.5,
    normalize: bool = True,
) -> Rays:
    """World-space rays through pixels (distortion taken into account).

    Args:
        cameras: N cameras.
        uv: (N, P, 2) or (P, 2) pixel coordinates; None for every pixel of the image
            (:func:`pixel_grid` order; all cameras must then have the same image size).
        pixel_offset: for ``uv=None`` only, see :func:`pixel_grid`.
        normalize: unit directions; otherwise directions are the world offsets to the point at
            view depth 1 (``t`` along the ray is then depth).

    Returns:
        Rays(origins (N, P, 3), directions (N, P, 3)), dtype and device of the cameras.
    """
    if uv is None:
        sizes = cameras.image_size
        if len(cameras) == 0 or bool((sizes != sizes[0]).any()):
            raise ValueError("uv=None needs cameras that all have the same image_size")
        height, width = (int(v) for v in sizes[0])
        uv = pixel_grid(height, width, pixel_offset, cameras.dtype, cameras.device)
    uv = uv.expand(len(cameras), *uv.shape[-2:]) if uv.dim() == 2 else uv
    points = cameras.unproject(uv, uv.new_ones(uv.shape[:-1]))
    origins = cameras.camera_center()[:, None, :].expand_as(points)
    directions = points - origins
    if normalize:
        directions = directions / directions.norm(dim=-1, keepdim=True)
    return Rays(origins, directions)


def ray_sphere_intersection(
    origins: torch.Tensor,
    directions: torch.Tensor,
    radius: float | torch.Tensor,
    center: torch.Tensor | None = None,
    clamp_near: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where rays ``o + t d`` enter and leave a sphere.

    Args:
        origins: (..., 3).
        directions: (..., 3), any non-zero norm.
        radius: float or (...) tensor.
        center: (3,) or (..., 3), default the origin.
        clamp_near: clamp ``near`` to 0 for rays starting inside the sphere.

    Returns:
        near (...), far (...): the two roots, ``near <= far`` (0 where not hit).
        hit (...) bool: the ray (t >= 0) meets the sphere, i.e. real roots and ``far >= 0``;
            tangent rays count as hits.
    """
    if center is not None:
        origins = origins - center
    a = (directions * directions).sum(-1)
    half_b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - torch.as_tensor(radius, dtype=a.dtype, device=a.device) ** 2
    quarter_discriminant = half_b * half_b - a * c
    real = quarter_discriminant >= 0
    root = torch.sqrt(quarter_discriminant.clamp_min(0))
    # Numerically stable roots: q = -(b/2 + sign(b/2) sqrt(disc/4)), t = q / a and c / q.
    q = -(half_b + torch.where(half_b >= 0, root, -root))
    safe_q = torch.where(q == 0, torch.ones_like(q), q)
    t0 = q / a
    t1 = torch.where(q == 0, -t0, c / safe_q)
    near, far = torch.minimum(t0, t1), torch.maximum(t0, t1)
    hit = real & (far >= 0)
    return _finish(near, far, hit, clamp_near)


def ray_aabb_intersection(
    origins: torch.Tensor,
    directions: torch.Tensor,
    box_min: torch.Tensor,
    box_max: torch.Tensor,
    clamp_near: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where rays ``o + t d`` enter and leave an axis-aligned box (slab method).

    A zero direction component means the ray never crosses that pair of planes: it is inside
    the slab for every t when its origin is (boundary included), else never.

    Args:
        origins: (..., 3).
        directions: (..., 3), any norm, components may be 0.
        box_min, box_max: (3,) or (..., 3) box corners.
        clamp_near: clamp ``near`` to 0 for rays starting inside the box.

    Returns:
        near (...), far (...) (0 where not hit).
        hit (...) bool: the ray (t >= 0) meets the box: ``near <= far`` and ``far >= 0``.
    """
    box_min = torch.as_tensor(box_min, dtype=origins.dtype, device=origins.device)
    box_max = torch.as_tensor(box_max, dtype=origins.dtype, device=origins.device)
    parallel = directions == 0
    safe = torch.where(parallel, torch.ones_like(directions), directions)
    t_low = (box_min - origins) / safe
    t_high = (box_max - origins) / safe
    inside = (origins >= box_min) & (origins <= box_max)
    inf = torch.full_like(t_low, float("inf"))
    slab_near = torch.where(parallel, torch.where(inside, -inf, inf), torch.minimum(t_low, t_high))
    slab_far = torch.where(parallel, torch.where(inside, inf, -inf), torch.maximum(t_low, t_high))
    near = slab_near.amax(-1)
    far = slab_far.amin(-1)
    hit = (near <= far) & (far >= 0)
    return _finish(near, far, hit, clamp_near)


def _finish(
    near: torch.Tensor, far: torch.Tensor, hit: torch.Tensor, clamp_near: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if clamp_near:
        near = near.clamp_min(0)
    zero = torch.zeros_like(near)
    return torch.where(hit, near, zero), torch.where(hit, far, zero), hit


def sample_stratified(
    near: torch.Tensor | float,
    far: torch.Tensor | float,
    n_samples: int,
    perturb: bool = False,
    generator: torch.Generator | None = None,
    inverse_depth: bool = False,
) -> torch.Tensor:
    """``n_samples`` ray parameters in equal bins between near and far.

    Unperturbed samples are the bin midpoints; perturbed ones are uniform within their bins.
    (The original NeRF spaces its unperturbed samples with ``linspace``, endpoints included;
    these midpoints are its bins' centres.)

    Args:
        near, far: (...) tensors or floats, broadcastable, ``near < far``.
        n_samples: samples per ray.
        perturb: jitter within bins.
        generator: torch.Generator for the jitter.
        inverse_depth: equal bins in 1/t (NeRF's ``lindisp``), needs ``near > 0``.

    Returns:
        (..., n_samples) increasing t.
    """
    near, far = _as_float_tensors(near, far)
    shape = near.shape + (n_samples,)
    offsets = torch.arange(n_samples, dtype=near.dtype, device=near.device)
    if perturb:
        jitter = torch.rand(shape, generator=generator, dtype=near.dtype, device=near.device)
    else:
        jitter = torch.full(shape, 0.5, dtype=near.dtype, device=near.device)
    fractions = (offsets + jitter) / n_samples
    near, far = near[..., None], far[..., None]
    if inverse_depth:
        return 1.0 / (1.0 / near * (1.0 - fractions) + 1.0 / far * fractions)
    return near + (far - near) * fractions


def sample_pdf(
    bins: torch.Tensor,
    weights: torch.Tensor,
    n_samples: int,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
    quantiles: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inverse-CDF sampling of a piecewise-constant pdf, as NeRF's hierarchical sampling.

    ``eps`` is added to every weight (so empty rays sample uniformly), the CDF is inverted with
    linear interpolation inside each bin. Deterministic samples use the quantiles
    ``linspace(0, 1, n_samples)`` as NeRF does, so the first lands on ``bins[..., 0]``. Also as
    in NeRF, a CDF step below 1e-5 (a bin holding little more than ``eps``) counts as empty: a
    quantile falling in it is placed at the bin's lower edge plus ``quantile - cdf``.

    Args:
        bins: (..., B + 1) increasing bin edges.
        weights: (..., B) non-negative weights.
        n_samples: samples per ray.
        deterministic: evenly spaced quantiles instead of uniform random ones.
        generator: torch.Generator for the random quantiles.
        eps: added to the weights.
        quantiles: (n_samples,) CDF levels to invert instead (NeuS uses the bin centres
            ``linspace(0.5 / n, 1 - 0.5 / n, n)``); overrides ``deterministic``.

    Returns:
        (..., n_samples) samples, not sorted when random.
    """
    if bins.shape[:-1] != weights.shape[:-1] or bins.shape[-1] != weights.shape[-1] + 1:
        raise ValueError(
            f"bins (..., B + 1) and weights (..., B) do not match: {tuple(bins.shape)} and "
            f"{tuple(weights.shape)}"
        )
    weights = weights + eps
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat((torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)), -1)
    shape = weights.shape[:-1] + (n_samples,)
    if quantiles is not None:
        quantiles = quantiles.to(bins).expand(shape).contiguous()
    elif deterministic:
        quantiles = torch.linspace(0.0, 1.0, n_samples, dtype=bins.dtype, device=bins.device)
        quantiles = quantiles.expand(shape).contiguous()
    else:
        quantiles = torch.rand(shape, generator=generator, dtype=bins.dtype, device=bins.device)
    above = torch.searchsorted(cdf.contiguous(), quantiles, right=True)
    below = (above - 1).clamp_min(0)
    above = above.clamp_max(cdf.shape[-1] - 1)
    cdf_below, cdf_above = cdf.gather(-1, below), cdf.gather(-1, above)
    bins_below, bins_above = bins.gather(-1, below), bins.gather(-1, above)
    span = cdf_above - cdf_below
    # Bins without mass (possible with eps=0): any fraction is fine, avoid 0/0.
    span = torch.where(span < _MIN_CDF_SPAN, torch.ones_like(span), span)
    fraction = (quantiles - cdf_below) / span
    return bins_below + fraction * (bins_above - bins_below)


def _as_float_tensors(near, far) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = [value for value in (near, far) if isinstance(value, torch.Tensor)]
    like = tensors[0] if tensors else torch.empty(0)
    dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
    near = torch.as_tensor(near, dtype=dtype, device=like.device)
    far = torch.as_tensor(far, dtype=dtype, device=like.device)
    return torch.broadcast_tensors(near, far)
