"""The one camera structure, :class:`Cameras`, in PyTorch3D's conventions.

Conventions (https://pytorch3d.org/docs/cameras, "Camera Coordinate Systems" and the screen/NDC
equations at the end of that page):

* World to view, ROW vectors: ``X_view = X_world @ R + T``.
* View space: +X left, +Y up, +Z forward (into the scene). OpenCV camera space (x right, y down,
  z forward) is ``(-X, -Y, Z)``.
* Pixels ("screen" in PyTorch3D): continuous coordinates (u right, v down) whose origin is the
  top-left CORNER of the top-left pixel; pixel (row i, col j) covers [j, j+1] x [i, i+1] and its
  centre is (j + 0.5, i + 0.5). This is also COLMAP's convention. OpenCV puts the centre of the
  top-left pixel at (0, 0), so an OpenCV ``K`` has ``c_opencv = c - 0.5``. (PyTorch3D's own
  ``cameras_from_opencv_projection`` does not apply this half-pixel shift; we do.)
* Projection: ``x = X_cv / Z``, ``y = Y_cv / Z``, OpenCV radial-tangential distortion of (x, y),
  then ``u = fx x + skew y + cx``, ``v = fy y + cy``.
* NDC (PyTorch3D, after its align_corners=False fix): with ``s = min(H, W)``,
  ``x_ndc = -(u - W/2) * 2/s``, ``y_ndc = -(v - H/2) * 2/s`` (+x left, +y up, short side spans
  [-1, 1]); ``focal_ndc = f * 2/s``; ``principal_point_ndc = -(c - size/2) * 2/s``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields

import torch

from geomkit.errors import InputError

_UNDISTORT_ITERATIONS = 20
_ROTATION_TOLERANCE = 1e-3


@dataclass(eq=False)
class Cameras:
    """A batch of N pinhole cameras with optional OpenCV radial-tangential distortion.

    Attributes:
        R: (N, 3, 3) float, world-to-view rotation, ROW-vector convention
            (``X_view = X_world @ R + T``).
        T: (N, 3) float, world-to-view translation.
        focal_length: (N, 2) float, (fx, fy) in pixels.
        principal_point: (N, 2) float, (cx, cy) in pixels, corner-origin convention (the centre
            of the top-left pixel is (0.5, 0.5)).
        image_size: (N, 2) int64, (H, W).
        skew: (N,) float, pixels (K[0, 1] of an OpenCV K); zeros when not given.
        distortion: (N, 4) float OpenCV (k1, k2, p1, p2) applied to normalised OpenCV camera
            coordinates, or None for none.

    All float fields share one dtype (float32 or float64) and all fields one device. Invalid
    shapes, non-finite values, non-positive focal lengths or image sizes and non-rotation R raise
    ValueError.
    """

    R: torch.Tensor
    T: torch.Tensor
    focal_length: torch.Tensor
    principal_point: torch.Tensor
    image_size: torch.Tensor
    skew: torch.Tensor | None = None
    distortion: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.R, torch.Tensor) or not self.R.is_floating_point():
            raise ValueError("Cameras.R must be a floating-point torch.Tensor of shape (N, 3, 3)")
        n = self.R.shape[0] if self.R.dim() == 3 else -1
        if self.skew is None:
            self.skew = self.R.new_zeros(max(n, 0))
        self.image_size = _integer_image_size(self.image_size)
        expected = {
            "R": (n, 3, 3),
            "T": (n, 3),
            "focal_length": (n, 2),
            "principal_point": (n, 2),
            "image_size": (n, 2),
            "skew": (n,),
            "distortion": (n, 4),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"Cameras.{name} must be a torch.Tensor, got {type(value)}")
            if tuple(value.shape) != shape or n < 0:
                raise ValueError(
                    f"Cameras.{name} must have shape {_shape_text(shape)} with the same N as R "
                    f"(N = {n if n >= 0 else '?'}), got {tuple(value.shape)}"
                )
            if value.device != self.R.device:
                raise ValueError(f"Cameras.{name} is on {value.device}, R on {self.R.device}")
            if name != "image_size" and value.dtype != self.R.dtype:
                raise ValueError(f"Cameras.{name} has dtype {value.dtype}, R has {self.R.dtype}")
            if name != "image_size" and not bool(torch.isfinite(value).all()):
                raise ValueError(f"Cameras.{name} has non-finite values (NaN or inf)")
        if bool((self.focal_length <= 0).any()):
            raise ValueError("Cameras.focal_length must be positive")
        if bool((self.image_size <= 0).any()):
            raise ValueError("Cameras.image_size must be positive (H, W)")
        _check_rotations(self.R)

    def __len__(self) -> int:
        return self.R.shape[0]

    def __getitem__(self, index: int | slice | list[int] | torch.Tensor) -> Cameras:
        """Select cameras by int (keeps the batch dim: N = 1), slice, list or index/bool tensor."""
        if isinstance(index, torch.Tensor) and index.dim() == 0:
            index = int(index)
        if isinstance(index, numbers.Integral):
            index = int(index)
            if not -len(self) <= index < len(self):
                raise IndexError(f"camera index {index} out of range for {len(self)} cameras")
            index = slice(index, index + 1 if index != -1 else None)
        elif isinstance(index, list):
            index = torch.tensor(index, dtype=torch.long, device=self.R.device)
        return Cameras(**{f.name: _index(getattr(self, f.name), index) for f in fields(self)})

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Cameras:
        """Cameras on ``device`` with float fields cast to ``dtype`` (image_size stays int64).

        Like ``Tensor.to``, tensors that need no change are shared, not copied.
        """
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                cast = dtype if f.name != "image_size" else None
                value = value.to(device=device, dtype=cast)
            values[f.name] = value
        return Cameras(**values)

    def clone(self) -> Cameras:
        """A deep copy (new tensors)."""
        return Cameras(**{f.name: _clone(getattr(self, f.name)) for f in fields(self)})

    @property
    def dtype(self) -> torch.dtype:
        return self.R.dtype

    @property
    def device(self) -> torch.device:
        return self.R.device

    def world_to_view(self, points: torch.Tensor) -> torch.Tensor:
        """View-space coordinates (+X left, +Y up, +Z forward).

        Args:
            points: (N, P, 3) world points, or (P, 3) shared by all cameras.

        Returns:
            (N, P, 3) ``points @ R + T``.
        """
        return points @ self.R + self.T[:, None, :]

    def view_to_world(self, points_view: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`world_to_view`: (N, P, 3) or (P, 3) view points -> (N, P, 3)."""
        return (points_view - self.T[:, None, :]) @ self.R.transpose(1, 2)

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points to pixels.

        Args:
            points: (N, P, 3) world points, or (P, 3) shared by all cameras.

        Returns:
            uv: (N, P, 2) pixel coordinates (corner-origin convention, u right, v down).
                Meaningless where depth <= 0 (points behind the camera are not masked).
            depth: (N, P) view-space Z (distance along the optical axis).
        """
        view = self.world_to_view(points)
        depth = view[..., 2]
        xy = -view[..., :2] / depth[..., None]
        if self.distortion is not None:
            xy = distort_normalized(xy, self.distortion[:, None, :])
        return self._normalized_to_pixels(xy), depth

    def unproject(self, uv: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """World points at given pixels and view depths (inverse of :meth:`project`).

        With distortion the normalised coordinates are undistorted iteratively (Newton steps on
        the OpenCV model, as cv2.undistortPoints does with fixed-point steps).

        Args:
            uv: (N, P, 2) pixels, or (P, 2) shared by all cameras.
            depth: (N, P) or (P,) view-space Z.

        Returns:
            (N, P, 3) world points.
        """
        xy = self._pixels_to_normalized(uv)
        if self.distortion is not None:
            xy = undistort_normalized(xy, self.distortion[:, None, :])
        depth = depth.expand(xy.shape[:-1])
        view = torch.cat((-xy * depth[..., None], depth[..., None]), -1)
        return self.view_to_world(view)

    def camera_center(self) -> torch.Tensor:
        """(N, 3) camera centres in world coordinates (``-T @ R^T``)."""
        return -(self.T[:, None, :] @ self.R.transpose(1, 2))[:, 0]

    def K_opencv(self) -> torch.Tensor:
        """(N, 3, 3) OpenCV intrinsics: ``[[fx, skew, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]]``."""
        K = self.R.new_zeros(len(self), 3, 3)
        K[:, 0, 0] = self.focal_length[:, 0]
        K[:, 1, 1] = self.focal_length[:, 1]
        K[:, 0, 1] = self.skew
        K[:, :2, 2] = self.principal_point - 0.5
        K[:, 2, 2] = 1.0
        return K

    def focal_length_ndc(self) -> torch.Tensor:
        """(N, 2) focal lengths in PyTorch3D NDC units: ``f * 2 / min(H, W)``."""
        return self.focal_length * 2.0 / self._short_side()[:, None]

    def principal_point_ndc(self) -> torch.Tensor:
        """(N, 2) principal points in PyTorch3D NDC: ``-(c - (W, H)/2) * 2 / min(H, W)``."""
        return pixel_to_ndc(self.principal_point, self.image_size)

    def _short_side(self) -> torch.Tensor:
        return self.image_size.min(dim=1).values.to(self.dtype)

    def _normalized_to_pixels(self, xy: torch.Tensor) -> torch.Tensor:
        x, y = xy.unbind(-1)
        fx, fy = self.focal_length[:, None, 0], self.focal_length[:, None, 1]
        cx, cy = self.principal_point[:, None, 0], self.principal_point[:, None, 1]
        return torch.stack((fx * x + self.skew[:, None] * y + cx, fy * y + cy), -1)

    def _pixels_to_normalized(self, uv: torch.Tensor) -> torch.Tensor:
        u, v = uv.unbind(-1)
        fx, fy = self.focal_length[:, None, 0], self.focal_length[:, None, 1]
        cx, cy = self.principal_point[:, None, 0], self.principal_point[:, None, 1]
        y = (v - cy) / fy
        x = (u - cx - self.skew[:, None] * y) / fx
        return torch.stack((x, y), -1)


def distort_normalized(xy: torch.Tensor, distortion: torch.Tensor) -> torch.Tensor:
    """OpenCV radial-tangential distortion of normalised OpenCV camera coordinates.

    ``r2 = x^2 + y^2``, ``radial = 1 + k1 r2 + k2 r2^2``,
    ``x_d = x radial + 2 p1 x y + p2 (r2 + 2 x^2)``,
    ``y_d = y radial + p1 (r2 + 2 y^2) + 2 p2 x y``.

    Args:
        xy: (..., 2) undistorted (X/Z, Y/Z), OpenCV axes.
        distortion: (..., 4) (k1, k2, p1, p2), broadcastable with xy.

    Returns:
        (..., 2) distorted coordinates.
    """
    x, y = xy.unbind(-1)
    k1, k2, p1, p2 = distortion.unbind(-1)
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    x_d = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    y_d = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack((x_d, y_d), -1)


def undistort_normalized(
    xy_distorted: torch.Tensor, distortion: torch.Tensor, iterations: int = _UNDISTORT_ITERATIONS
) -> torch.Tensor:
    """Invert :func:`distort_normalized` by Newton's method, starting from the distorted point.

    Args:
        xy_distorted: (..., 2) distorted normalised coordinates.
        distortion: (..., 4) (k1, k2, p1, p2), broadcastable.
        iterations: Newton steps (converges in a handful for real lenses inside the image).

    Returns:
        (..., 2) undistorted normalised coordinates.
    """
    k1, k2, p1, p2 = distortion.unbind(-1)
    xy = xy_distorted
    for _ in range(iterations):
        x, y = xy.unbind(-1)
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        d_radial = 2 * k1 + 4 * k2 * r2  # d radial / d(x or y), divided by x or y
        residual = distort_normalized(xy, distortion) - xy_distorted
        j00 = radial + d_radial * x * x + 2 * p1 * y + 6 * p2 * x
        j01 = d_radial * x * y + 2 * p1 * x + 2 * p2 * y
        j11 = radial + d_radial * y * y + 6 * p1 * y + 2 * p2 * x
        det = j00 * j11 - j01 * j01
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        step_x = (j11 * residual[..., 0] - j01 * residual[..., 1]) / det
        step_y = (j00 * residual[..., 1] - j01 * residual[..., 0]) / det
        xy = xy - torch.stack((step_x, step_y), -1)
    return xy


def pixel_to_ndc(uv: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """Pixels (corner-origin, u right, v down) to PyTorch3D NDC (+x left, +y up).

    ``x_ndc = -(u - W/2) * 2/s``, ``y_ndc = -(v - H/2) * 2/s`` with ``s = min(H, W)``.

    Args:
        uv: (..., 2) pixel coordinates, e.g. (N, P, 2) or (N, 2).
        image_size: (2,) or (N, 2) (H, W); for uv of shape (N, P, 2) a (N, 2) image_size is
            applied per camera.

    Returns:
        (..., 2) NDC coordinates, dtype of uv.
    """
    size_wh, short_side = _size_wh_and_short_side(uv, image_size)
    return -(uv - size_wh / 2.0) * 2.0 / short_side


def ndc_to_pixel(xy_ndc: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pixel_to_ndc`: ``u = W/2 - x_ndc * s/2``, ``v = H/2 - y_ndc * s/2``.

    Args:
        xy_ndc: (..., 2) PyTorch3D NDC coordinates.
        image_size: (2,) or (N, 2) (H, W), as in :func:`pixel_to_ndc`.

    Returns:
        (..., 2) pixel coordinates.
    """
    size_wh, short_side = _size_wh_and_short_side(xy_ndc, image_size)
    return size_wh / 2.0 - xy_ndc * short_side / 2.0


def _size_wh_and_short_side(
    coords: torch.Tensor, image_size: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    image_size = torch.as_tensor(image_size, device=coords.device)
    if image_size.shape[-1] != 2:
        raise ValueError(f"image_size must have shape (..., 2) (H, W), got {image_size.shape}")
    if image_size.dim() >= 2 and coords.dim() == image_size.dim() + 1:
        image_size = image_size[..., None, :]
    size_wh = image_size.flip(-1).to(coords.dtype)
    return size_wh, size_wh.min(dim=-1, keepdim=True).values


def _integer_image_size(image_size) -> torch.Tensor:
    image_size = torch.as_tensor(image_size)
    if image_size.is_floating_point():
        if not bool(torch.isfinite(image_size).all()) or bool(
            (image_size != image_size.round()).any()
        ):
            raise ValueError(f"Cameras.image_size must hold integers (H, W), got {image_size}")
    elif image_size.dtype == torch.bool or image_size.is_complex():
        raise ValueError(f"Cameras.image_size must hold integers, got dtype {image_size.dtype}")
    return image_size.to(torch.int64)


def _check_rotations(R: torch.Tensor) -> None:
    bad = find_non_rotation(R)
    if bad is not None:
        raise ValueError(
            f"Cameras.R{bad}; a reflection usually means an axis flip between conventions was "
            "applied to one side only"
        )


def find_non_rotation(R: torch.Tensor, tolerance: float = _ROTATION_TOLERANCE) -> str | None:
    """None if every (N, 3, 3) matrix is a rotation within ``tolerance``, else a description
    of the first that is not, like ``"[3] is not a rotation (|R^T R - I| = 0.2, det = 1.1)"``.
    """
    if R.shape[0] == 0:
        return None
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    error = (R.transpose(1, 2) @ R - eye).abs().amax(dim=(1, 2))
    det = torch.det(R)
    bad = (error > tolerance) | (det <= 0)
    if not bool(bad.any()):
        return None
    i = int(torch.nonzero(bad)[0, 0])
    return (
        f"[{i}] is not a rotation (|R^T R - I| = {float(error[i]):.2g}, det = {float(det[i]):.3g})"
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join("N" if i == 0 else str(d) for i, d in enumerate(shape)) + ")"


def _index(value: torch.Tensor | None, index) -> torch.Tensor | None:
    return None if value is None else value[index]


def _clone(value: torch.Tensor | None) -> torch.Tensor | None:
    return None if value is None else value.clone()


def as_float_tensor(value, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """``value`` (tensor, array or nested list) as a float tensor; ints become float32.

    Used by the converters so that they accept numpy arrays and keep float64 when given it.
    """
    tensor = torch.as_tensor(value, device=device)
    if dtype is not None:
        return tensor.to(dtype)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


def batch_image_size(image_size, n: int, device=None) -> torch.Tensor:
    """(H, W) given as (2,) or (N, 2) -> (N, 2) int64; InputError for any other shape."""
    size = torch.as_tensor(image_size, device=device)
    if size.dim() == 1:
        size = size.expand(n, -1)
    if tuple(size.shape) != (n, 2):
        raise InputError(
            f"image_size must be (H, W) or have shape ({n}, 2), got {tuple(size.shape)}"
        )
    return _integer_image_size(size).clone()  # expand() shares memory between rows


def require_shape(tensor: torch.Tensor, shape: tuple[int | None, ...], name: str) -> None:
    """InputError naming ``name`` unless ``tensor`` has ``shape`` (None matches any size)."""
    ok = tensor.dim() == len(shape) and all(
        want is None or want == got for want, got in zip(shape, tensor.shape, strict=True)
    )
    if not ok:
        wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name} must have shape {wanted}, got {tuple(tensor.shape)}")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{name} has non-finite values (NaN or inf)")
