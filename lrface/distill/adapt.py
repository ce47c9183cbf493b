"""``lrface adapt``: adapt a student to one camera from its unlabelled faces.

The method is batch-norm re-estimation (AdaBN, Li et al. 2016): the student's weights stay
as they are, and every BatchNorm layer's running mean and variance are replaced by the
statistics of the camera's faces -- each face, and its mirror image, aligned (SCRFD /
YuNet, as any user photo), brought to the student's input exactly as at inference
(:func:`lrface.models.preprocess.to_input`) and passed through the network in training
mode with a cumulative average (``momentum=None``), no gradient.  A camera's blur, noise,
compression and light shift the activations; the re-estimated statistics re-centre them.

Only students with BatchNorm layers can be adapted this way: the tiny students
(``lrface-tiny-16/24/32``).  ``lrface-mbf`` has its batch-norm folded into its
convolutions (it starts from the teacher's ONNX graph), so it has no statistics to
re-estimate and is refused in one line.

It needs no labels and no teacher, so it cannot calibrate a new threshold: the card keeps
the base model's thresholds and says so.  Output, like ``lrface distill``:
``<out>/<name>.pt`` (state dict) and ``<out>/<name>.json`` (a card the registry loads:
``lrface verify --model <out>/<name>.pt``), ``<name>`` = ``<base>-adapted``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from lrface.errors import DatasetError, LrfaceError

log = logging.getLogger("lrface")

#: Fewest faces ``adapt`` accepts: batch statistics of fewer are noise.
MIN_FACES = 16
#: Faces per forward pass while the statistics are gathered.
BATCH = 64


def bn_statistics_from(net: Any, crops: np.ndarray, fmt: Any, batch: int = BATCH) -> int:
    """Replace the running statistics of every BatchNorm layer of ``net`` (a torch module)
    by their cumulative average over ``crops`` (N, h, w, 3) uint8 BGR aligned faces and
    their mirror images, each converted to ``fmt`` (:class:`InputFormat`: the student's
    side, colour order, mean/std).  Weights are not touched; ``net`` ends in eval mode.
    Returns the number of BatchNorm layers re-estimated."""
    import torch

    from lrface.models.preprocess import to_input

    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over every batch
    net.train()
    try:
        with torch.no_grad():
            views = np.concatenate([crops, crops[:, :, ::-1]])
            for i in range(0, len(views), batch):
                x = torch.from_numpy(to_input(np.ascontiguousarray(views[i : i + batch]), fmt))
                net(x)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        net.eval()
    return len(bns)


def _count_listed(data: str) -> int:
    from lrface.datasets.sources import list_folder, parse_source

    source = parse_source(f"unlabelled:{data}")
    return len(list_folder(source)[1])


def adapt(
    data: str, model: str, out: str, detector: str | None = None, progress: bool = True
) -> dict[str, Any]:
    """Adapt the torch student ``model`` (a registered name or a ``.pt``/``.json`` card)
    to the unlabelled faces of ``data`` (a folder of photos or crops, or a .txt list);
    write ``<out>/<base>-adapted.pt`` and its card; return the card."""
    import torch

    from lrface.datasets.sources import parse_source
    from lrface.distill.faces import load_source
    from lrface.faces.detect import DEFAULT_DETECTOR
    from lrface.io.fileio import atomic_write, check_writable, sha256_file, write_json_atomic
    from lrface.models.preprocess import InputFormat
    from lrface.models.registry import get_spec, torch_weights
    from lrface.models.torch_embedder import load_student_module

    check_writable(out, "dir", "--out")
    spec = get_spec(model)
    if spec.kind != "student":
        raise LrfaceError(f"--model {model}: a student (e.g. lrface-tiny-16), not a {spec.kind}")
    weights = torch_weights(spec)  # refuses an ONNX-only model in one line
    net = load_student_module(spec, weights)
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        raise LrfaceError(
            f"--model {model}: its batch-norm is folded into its convolutions, so there are no "
            "statistics to re-estimate; adapt a student with BatchNorm layers (lrface-tiny-16, "
            "lrface-tiny-24, lrface-tiny-32)"
        )
    listed = _count_listed(data)
    if listed < MIN_FACES:
        raise DatasetError(
            f"{data}: {listed} images listed; adapt needs at least {MIN_FACES} faces of the "
            "camera (more is better: a few hundred)"
        )
    part = load_source(
        parse_source(f"unlabelled:{data}"), detector=detector or DEFAULT_DETECTOR, progress=progress
    )
    n = len(part.faces)
    if n < MIN_FACES:
        raise DatasetError(
            f"{data}: faces found in {n} of {part.listed} images; adapt needs at least "
            f"{MIN_FACES} (no face: {len(part.no_face)}, unreadable: {len(part.unreadable)})"
        )
    crops = np.stack([part.faces.crops[i] for i in range(n)])
    fmt = InputFormat.of(spec)
    layers = bn_statistics_from(net, crops, fmt)
    base = spec.card or {}
    name = f"{spec.name}-adapted"
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    pt = dest / f"{name}.pt"
    with atomic_write(pt, "wb") as fh:
        torch.save(net.state_dict(), fh)
    card = {
        **{k: v for k, v in base.items() if k not in ("torch_weights", "url", "pack")},
        "name": name,
        "runtime": "torch",
        "weights_file": pt.name,
        "sha256": sha256_file(pt),
        "threshold_note": f"the base model's ({spec.name}): adaptation uses no labels, so "
        "no threshold is re-calibrated",
        "adapted": {
            "base_model": spec.name,
            "base_sha256": sha256_file(weights),
            "method": f"batch-norm statistics re-estimated on the camera's faces and their "
            f"mirrors ({layers} layers; cumulative average; weights unchanged)",
            "data": Path(data).name,
            "images_listed": part.listed,
            "faces": n,
            "no_face_skipped": len(part.no_face),
            "unreadable_skipped": len(part.unreadable),
        },
        "license": base.get("license", "see the base model's card"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "threshold_vs_teacher" in base:
        card["threshold_vs_teacher_note"] = "the base model's (not re-calibrated)"
    write_json_atomic(dest / f"{name}.json", card)
    log.info("adapted %s on %d faces of %s -> %s", spec.name, n, data, pt)
    return card
