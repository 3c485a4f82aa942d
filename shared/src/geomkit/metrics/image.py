"""Full-reference image metrics: PSNR and SSIM, equal to scikit-image's, batched and differentiable.

Images are float tensors ``(B, C, H, W)`` or a single ``(C, H, W)``, values in
``[0, data_range]``. Each metric returns one value per image as a float64 tensor: shape ``(B,)``
for a batch, ``()`` for a single image.

``ssim`` is scikit-image's ``structural_similarity(im1, im2, channel_axis=..., data_range=...)``
(skimage 0.19+): local statistics from a Gaussian (``scipy.ndimage.gaussian_filter``, truncate
3.5) or uniform (``scipy.ndimage.uniform_filter``) window with scipy's ``'reflect'`` border
(half-sample symmetric: ``d c b a | a b c d``), the SSIM map cropped by ``(win_size - 1) // 2``
on every side, averaged per channel, then over channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geomkit.errors import InputError

# skimage's Gaussian SSIM window: an 11-tap filter for sigma 1.5, as Wang et al. 2004.
_GAUSSIAN_TRUNCATE = 3.5
_UNIFORM_WIN_SIZE = 7


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` per image, in dB.

    Without a mask this is ``skimage.metrics.peak_signal_noise_ratio(target, pred,
    data_range=data_range)``; identical images give ``inf``.

    Args:
        pred: (B, C, H, W) or (C, H, W) float, the rendered/estimated image.
        target: same shape and dtype as ``pred``, the reference image.
        data_range: max - min of the value range (1.0 for [0, 1], 255.0 for [0, 255]).
        mask: optional bool (B, 1, H, W) or (B, H, W) (for a single image (1, H, W) or
            (H, W)); True marks the pixels whose squared error, over all channels, enters the
            MSE. Every image needs at least one True pixel.

    Returns:
        (B,) float64 PSNR in dB, or () for a single image.
    """
    _check_data_range(data_range)
    pred4, target4, batched = _as_batches(pred, target)
    squared_error = (pred4 - target4).square().to(torch.float64)
    if mask is None:
        mse = squared_error.mean(dim=(1, 2, 3))
    else:
        mask4 = _mask_as_batch(mask, pred4.shape, batched)
        num_values = mask4.sum(dim=(1, 2, 3)) * pred4.shape[1]
        mse = (squared_error * mask4).sum(dim=(1, 2, 3)) / num_values
    value = 10.0 * torch.log10(float(data_range) ** 2 / mse)
    return value if batched else value[0]


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    gaussian_weights: bool = True,
    sigma: float = 1.5,
    win_size: int | None = None,
    use_sample_covariance: bool | None = None,
    K1: float = 0.01,
    K2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity per image, exactly scikit-image's ``structural_similarity``.

    Equals ``structural_similarity(target, pred, channel_axis=0, data_range=data_range,
    gaussian_weights=gaussian_weights, sigma=sigma, win_size=win_size,
    use_sample_covariance=<resolved value>, K1=K1, K2=K2)`` per image. The defaults are
    Wang et al. 2004 (Gaussian window, sigma 1.5, 11 taps, population covariance).
    Differentiable with respect to both images.

    Args:
        pred: (B, C, H, W) or (C, H, W) float image; every side must be >= ``win_size``.
        target: same shape and dtype as ``pred``.
        data_range: max - min of the value range (1.0 for [0, 1], 255.0 for [0, 255]).
        gaussian_weights: True: Gaussian-weighted local statistics (``sigma``, truncated at
            3.5 sigma); False: uniform ``win_size`` x ``win_size`` window.
        sigma: standard deviation of the Gaussian window, in pixels.
        win_size: odd window side. None: ``2 * int(3.5 * sigma + 0.5) + 1`` (11 for sigma 1.5)
            with Gaussian weights, 7 with a uniform window. With Gaussian weights it only sets
            the border crop and the sample-covariance factor, as in skimage.
        use_sample_covariance: normalise (co)variances by N - 1 instead of N, N = win_size^2.
            None: False with Gaussian weights (Wang et al.), True with a uniform window (the
            skimage default there). Note skimage's own default is True in both modes.
        K1: constant of the luminance term, C1 = (K1 * data_range)^2.
        K2: constant of the contrast-structure term, C2 = (K2 * data_range)^2.

    Returns:
        (B,) float64 mean SSIM over the cropped valid region and the channels, or () for a
        single image.
    """
    ssim_full, win_size, batched = _batched_ssim_map(
        pred, target, data_range, gaussian_weights, sigma, win_size, use_sample_covariance, K1, K2
    )
    pad = (win_size - 1) // 2
    height, width = ssim_full.shape[-2:]
    valid = ssim_full[..., pad : height - pad, pad : width - pad]
    value = valid.to(torch.float64).mean(dim=(1, 2, 3))
    return value if batched else value[0]


def ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    gaussian_weights: bool = True,
    sigma: float = 1.5,
    win_size: int | None = None,
    use_sample_covariance: bool | None = None,
    K1: float = 0.01,
    K2: float = 0.03,
) -> torch.Tensor:
    """Local SSIM at every pixel and channel, skimage's ``full=True`` image ``S``, uncropped.

    Args:
        pred, target, data_range, gaussian_weights, sigma, win_size, use_sample_covariance,
        K1, K2: as in :func:`ssim`.

    Returns:
        SSIM map with the shape and dtype of ``pred``: (B, C, H, W) or (C, H, W). Its border
        of ``(win_size - 1) // 2`` pixels sees the reflected padding; :func:`ssim` leaves it out.
    """
    full, _, batched = _batched_ssim_map(
        pred, target, data_range, gaussian_weights, sigma, win_size, use_sample_covariance, K1, K2
    )
    return full if batched else full[0]


def _batched_ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: float,
    gaussian_weights: bool,
    sigma: float,
    win_size: int | None,
    use_sample_covariance: bool | None,
    K1: float,
    K2: float,
) -> tuple[torch.Tensor, int, bool]:
    """skimage's SSIM map (B, C, H, W), the resolved window side, whether input was batched."""
    _check_data_range(data_range)
    if K1 < 0 or K2 < 0:
        raise ValueError(f"K1 and K2 must be >= 0, got K1={K1}, K2={K2}")
    pred, target, batched = _as_batches(pred, target)
    win_size, use_sample_covariance = _resolve_window(
        gaussian_weights, sigma, win_size, use_sample_covariance, tuple(pred.shape[-2:])
    )
    if gaussian_weights:
        weights = _gaussian_window_1d(sigma, pred.dtype, pred.device)
    else:
        weights = torch.full((win_size,), 1.0 / win_size, dtype=pred.dtype, device=pred.device)
    channels = pred.shape[1]
    # One filtering pass for the five local moments: stacked along the channel axis.
    moments = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
    mu_p, mu_t, mu_pp, mu_tt, mu_pt = _filter_reflect(moments, weights).split(channels, dim=1)

    num_window = win_size**2
    cov_norm = num_window / (num_window - 1) if use_sample_covariance else 1.0
    var_p = cov_norm * (mu_pp - mu_p * mu_p)
    var_t = cov_norm * (mu_tt - mu_t * mu_t)
    cov_pt = cov_norm * (mu_pt - mu_p * mu_t)

    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    numerator = (2 * mu_p * mu_t + c1) * (2 * cov_pt + c2)
    denominator = (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    return numerator / denominator, win_size, batched


def _resolve_window(
    gaussian_weights: bool,
    sigma: float,
    win_size: int | None,
    use_sample_covariance: bool | None,
    image_hw: tuple[int, int],
) -> tuple[int, bool]:
    """skimage's window size and covariance choice; checks the image is large enough."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if win_size is None:
        win_size = 2 * _gaussian_radius(sigma) + 1 if gaussian_weights else _UNIFORM_WIN_SIZE
    if win_size < 3 or win_size % 2 != 1:
        raise ValueError(
            f"win_size must be an odd integer >= 3, got {win_size} (with gaussian_weights and "
            "win_size=None it is 2 * int(3.5 * sigma + 0.5) + 1: use sigma >= 0.15)"
        )
    if min(image_hw) < win_size:
        raise InputError(
            f"images of size {image_hw[0]}x{image_hw[1]} are smaller than the SSIM window "
            f"win_size={win_size}; use images at least {win_size}x{win_size} or pass a smaller "
            "odd win_size (with gaussian_weights, a smaller sigma)"
        )
    if use_sample_covariance is None:
        use_sample_covariance = not gaussian_weights
    return win_size, use_sample_covariance


def _gaussian_radius(sigma: float) -> int:
    """scipy.ndimage's Gaussian radius for ``truncate=3.5``."""
    return int(_GAUSSIAN_TRUNCATE * sigma + 0.5)


def _gaussian_window_1d(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1D Gaussian taps (2r + 1,), as scipy.ndimage.gaussian_filter1d builds them."""
    radius = _gaussian_radius(sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def _filter_reflect(images: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Separable correlation of every channel with ``weights`` along H then W, scipy 'reflect'.

    Args:
        images: (B, C, H, W) float.
        weights: (K,) odd-length taps, same dtype and device.

    Returns:
        (B, C, H, W) filtered images.
    """
    channels = images.shape[1]
    radius = (weights.numel() - 1) // 2
    padded = _pad_reflect(_pad_reflect(images, radius, dim=2), radius, dim=3)
    kernel_h = weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    kernel_w = weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    filtered = F.conv2d(padded, kernel_h, groups=channels)
    return F.conv2d(filtered, kernel_w, groups=channels)


def _pad_reflect(images: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Pad ``pad`` samples on both ends of ``dim`` with scipy.ndimage's 'reflect' extension.

    Half-sample symmetric (the edge sample repeats), periodic with period 2n, so any ``pad``
    works, also wider than the image. torch's 'reflect' mode does not repeat the edge.
    """
    size = images.shape[dim]
    positions = torch.arange(-pad, size + pad, device=images.device) % (2 * size)
    source = torch.where(positions >= size, 2 * size - 1 - positions, positions)
    return images.index_select(dim, source)


def _as_batches(
    pred: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Checked (B, C, H, W) views of both images and whether the input was batched."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"pred and target must be torch tensors, got {type(pred).__name__} and "
            f"{type(target).__name__}"
        )
    if not pred.is_floating_point() or pred.dtype != target.dtype:
        raise TypeError(
            f"pred and target must be floating point of the same dtype, got {pred.dtype} and "
            f"{target.dtype}; convert images with .float() / 255 or similar"
        )
    if pred.shape != target.shape:
        raise InputError(
            f"pred has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}; "
            "both images must have the same (B, C, H, W) or (C, H, W) shape"
        )
    if pred.dim() not in (3, 4):
        raise InputError(
            f"images must be (B, C, H, W) or (C, H, W), got shape {tuple(pred.shape)}; "
            "for a single-channel (H, W) image pass image[None]"
        )
    for name, image in (("pred", pred), ("target", target)):
        if not bool(torch.isfinite(image).all()):
            raise InputError(f"{name} contains NaN or infinite values; metrics need finite images")
    batched = pred.dim() == 4
    if not batched:
        return pred.unsqueeze(0), target.unsqueeze(0), False
    return pred, target, True


def _mask_as_batch(mask: torch.Tensor, image_shape: torch.Size, batched: bool) -> torch.Tensor:
    """Checked (B, 1, H, W) bool mask for images of ``image_shape`` (B, C, H, W)."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        found = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a bool tensor, got {found}; use mask > 0.5 or similar")
    mask4 = mask if batched else mask.unsqueeze(0)
    if mask4.dim() == 3:
        mask4 = mask4.unsqueeze(1)
    batch, _, height, width = image_shape
    if tuple(mask4.shape) != (batch, 1, height, width):
        expected = f"({batch}, 1, {height}, {width}) or ({batch}, {height}, {width})"
        if not batched:
            expected = f"(1, {height}, {width}) or ({height}, {width})"
        raise InputError(
            f"mask has shape {tuple(mask.shape)}, expected {expected} to match the images"
        )
    empty = (~mask4.flatten(1).any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise InputError(
            f"mask selects no pixel in image(s) {empty} of the batch; PSNR needs at least one "
            "masked pixel per image (drop those images or pass mask=None)"
        )
    return mask4


def _check_data_range(data_range: float) -> None:
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
