"""Online teacher targets: the teacher embeds each augmented HR view inside the training loop.

When the student trains on a GPU and the teacher is a 112-px MobileFaceNet ONNX
(``mobilefacenet-arcface``), the teacher runs as a torch copy of its own weights
(:func:`lrface.models.students.mobilefacenet_from_onnx`, equal to the ONNX model to float
precision) on that GPU, so it costs almost nothing.  On a CPU its onnxruntime embedder is
used (measured here, 2 threads: 3.4 ms per face against 8.3 ms for the torch copy).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from lrface.models import registry
from lrface.models.interface import Embedder
from lrface.models.preprocess import InputFormat, resize_crop, to_input_torch

log = logging.getLogger("lrface")


class OnlineTeacher:
    """Teacher embeddings of uint8 BGR HR views, computed where the student trains.

    Both paths convert the views as the teacher's registry entry says: the torch copy
    with :func:`lrface.models.preprocess.to_input_torch` on the device, onnxruntime
    through the embedder's :func:`~lrface.models.preprocess.to_input`.

    ``fuse_flips``: add the embedding of the mirrored view before normalising (the
    flip-fused target, as HR gallery faces are embedded at test time).  ``use_torch``:
    run the torch copy (None: only on a CUDA device).
    """

    def __init__(
        self,
        teacher: Embedder,
        device: torch.device,
        fuse_flips: bool,
        use_torch: bool | None = None,
    ) -> None:
        self.teacher, self.device, self.fuse_flips = teacher, device, fuse_flips
        spec = teacher.spec
        self.net: torch.nn.Module | None = None
        if use_torch is None:
            use_torch = device.type == "cuda"
        if use_torch and spec.runtime == "onnx" and spec.input_size == 112:
            from lrface.models.students import mobilefacenet_from_onnx

            try:
                net = mobilefacenet_from_onnx(registry.locate(spec)).to(device).eval()
                # channels_last: ~4x faster depthwise convolutions on CPU (same result);
                # Module.to(memory_format=...) works but is missing from torch's overloads
                self.net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            except ValueError as exc:  # not a MobileFaceNet graph: use onnxruntime
                log.info("online teacher: onnxruntime (%s)", exc)
        self.input_format = InputFormat.of(spec, teacher.input_size)
        if self.net is not None:
            log.info("online teacher: torch copy of %s on %s", spec.name, device)
        else:
            log.info("online teacher: %s through onnxruntime", spec.name)

    @torch.no_grad()
    def __call__(self, hr: torch.Tensor) -> torch.Tensor:
        """``hr``: uint8 (B, s, s, 3) BGR views (any side s: resized to the model's input
        as :func:`~lrface.models.preprocess.to_input` resizes, e.g. a tiny student's
        16 px input for ``--lr-teacher``) -> float32 (B, D) L2-normalised, on device."""
        if self.net is None:
            feats = self.teacher.embed_crops(hr.numpy(), flip=self.fuse_flips)
            return torch.from_numpy(np.asarray(feats)).to(self.device)
        side = self.input_format.size
        if tuple(hr.shape[1:3]) != (side, side):
            hr = torch.from_numpy(np.stack([resize_crop(v, side) for v in hr.numpy()]))
        x = to_input_torch(hr, self.input_format, self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        f = self.net(x)
        if self.fuse_flips:
            f = f + self.net(x.flip(3))
        return torch.nn.functional.normalize(f, dim=1)
