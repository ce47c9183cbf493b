"""The one crop-to-tensor conversion, derived from a model's registry entry.

Every embedder (ONNX teacher, ONNX exports, torch students), the distillation dataset,
its validator and its online teacher turn face crops into model input here, so training
and inference see bit-identical tensors for the same crop:

1. resize to the model's square side ``S`` with :func:`resize_crop` (area when a side shrinks,
   bicubic otherwise; a crop already ``S x S`` is unchanged);
2. reorder the channels from BGR (lrface's crop order) to the model's ``color`` ("RGB"
   or "BGR");
3. ``(pixel - mean) / std`` per channel in float32, ``mean``/``std`` in pixel units
   (0-255) and in the model's colour order;
4. HWC -> CHW.

:class:`InputFormat` holds the four settings; :meth:`InputFormat.of` reads them from a
:class:`~lrface.models.registry.ModelSpec` (its ``input_size``, ``color``, ``mean``,
``std``; a student trained from a teacher uses the teacher's entry with its own side).
:func:`to_input` is the numpy conversion; :func:`to_input_torch` the same arithmetic on
a torch device, for uint8 batches already at the model's side (the online teacher).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from lrface.models.registry import ModelSpec

if TYPE_CHECKING:
    import torch

COLORS = ("RGB", "BGR")


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """Resize a crop of any shape to the square ``size`` x ``size`` a model takes.

    The one resize rule of lrface (``--no-detect`` crops, small aligned faces, every
    embedder's input): area interpolation when either side shrinks (no aliasing),
    bicubic when no side shrinks (the same recipe as :mod:`lrface.faces.degrade`).  A crop
    already ``size`` x ``size`` is returned as is.  uint8 BGR (h, w, 3) in, uint8 BGR
    (size, size, 3) out.
    """
    h, w = crop.shape[:2]
    if (h, w) == (size, size):
        return crop
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


@dataclass(frozen=True)
class InputFormat:
    """What a model expects: square side ``size`` (pixels), channel order ``color``
    ("RGB" or "BGR") and per-channel ``mean``/``std`` (3 values each) in pixel units, in
    ``color`` order."""

    size: int
    color: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        color = str(self.color).upper()
        if color not in COLORS:
            raise ValueError(f"color: expected RGB or BGR, got {self.color!r}")
        object.__setattr__(self, "color", color)
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean/std: expected 3 values each, got {self.mean}, {self.std}")

    @classmethod
    def of(cls, spec: ModelSpec | InputFormat, size: int | None = None) -> InputFormat:
        """The format of registry entry ``spec`` (``size`` overrides its input side: a
        student of side 16 normalised as its teacher; default side 112)."""
        if isinstance(spec, InputFormat):
            return spec if size is None else cls(size, spec.color, spec.mean, spec.std)
        side = size if size is not None else (spec.input_size or 112)
        return cls(int(side), spec.color, spec.mean, spec.std)

    @property
    def mean32(self) -> np.ndarray:
        """float32 (3,) mean, model colour order."""
        return np.asarray(self.mean, np.float32)

    @property
    def std32(self) -> np.ndarray:
        """float32 (3,) std, model colour order."""
        return np.asarray(self.std, np.float32)

    def bgr_channel(self, ch: int) -> int:
        """Index in a BGR crop of the model's input channel ``ch``."""
        return 2 - ch if self.color == "RGB" else ch


def to_input(
    crops: Sequence[np.ndarray] | np.ndarray,
    spec: ModelSpec | InputFormat,
    mirrors: bool = False,
) -> np.ndarray:
    """uint8 BGR crops -> the model's float32 input (N, 3, S, S).

    ``crops``: one uint8 (h, w, 3) BGR crop, a uint8 (N, h, w, 3) BGR array, or a sequence
    of uint8 (h, w, 3) BGR crops of any sizes.  ``spec``: the model's registry entry or an
    :class:`InputFormat` (side ``S``, colour order, mean/std).  Each crop is resized to
    ``S x S`` (:func:`lrface.models.preprocess.resize_crop`), put in the model's colour order and
    normalised ``(pixel - mean) / std`` in float32 (pixel in [0, 255]; with the default
    mean = std = 127.5 the values lie in [-1, 1]).  Returns C-contiguous float32
    (N, 3, S, S), N = 1 for a single crop.

    ``mirrors``: return (2N, 3, S, S), the crops followed by their horizontal mirrors (one
    buffer for a flip-fused forward).
    """
    fmt = InputFormat.of(spec)
    if isinstance(crops, np.ndarray) and crops.ndim == 3:
        crops = crops[None]
    s = fmt.size
    if isinstance(crops, np.ndarray) and crops.shape[1:3] == (s, s):
        batch = crops.transpose(0, 3, 1, 2)
    else:
        batch = np.stack([resize_crop(c, s) for c in crops]).transpose(0, 3, 1, 2)
    n = len(batch)
    out = np.empty((2 * n if mirrors else n, 3, s, s), np.float32)
    mean, std = fmt.mean32, fmt.std32
    for ch in range(3):  # each plane written once, straight from the uint8 pixels
        plane = out[:n, ch]
        np.subtract(batch[:, fmt.bgr_channel(ch)], mean[ch], out=plane)
        np.divide(plane, std[ch], out=plane)
    if mirrors:
        out[n:] = out[:n, :, :, ::-1]
    return out


def to_input_torch(
    crops: torch.Tensor, spec: ModelSpec | InputFormat, device: torch.device | None = None
) -> torch.Tensor:
    """:func:`to_input` on a torch device, for crops already at the model's side.

    ``crops``: uint8 (N, S, S, 3) BGR tensor (any device).  Returns float32 (N, 3, S, S) on
    ``device`` (default: the crops' device), model colour order, ``(pixel - mean) / std``:
    the same float32 arithmetic as :func:`to_input`, so equal to it on the CPU.  Raises
    ValueError for crops of another side (resize them with :func:`to_input`).
    """
    import torch

    fmt = InputFormat.of(spec)
    if crops.ndim != 4 or tuple(crops.shape[1:]) != (fmt.size, fmt.size, 3):
        raise ValueError(
            f"crops: expected uint8 (N, {fmt.size}, {fmt.size}, 3), got {tuple(crops.shape)}"
        )
    dev = crops.device if device is None else device
    x = crops.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()
    order = [fmt.bgr_channel(ch) for ch in range(3)]
    if order != [0, 1, 2]:
        x = x[:, order]
    mean = torch.tensor(fmt.mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(fmt.std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    return (x - mean) / std
