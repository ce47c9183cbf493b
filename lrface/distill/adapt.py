"""``lrface adapt``: adapt a student to one camera from its unlabelled faces.

Two methods (``--method``):

* ``bn`` (the default; measured: +0.70 points on its camera, -1.10 on clean probes,
  ``docs/experiments/camera-adaptation.md`` round 1) -- batch-norm re-estimation,
  below;
* ``degradation-match`` -- estimate the camera's blur, noise and JPEG from its faces
  (:mod:`lrface.distill.camera_estimate`), then distil the student from the teacher on HR
  faces of ``--hr-data`` degraded by that estimate, mixed with clean views
  (:mod:`lrface.distill.camera_finetune`).  The HR faces are loaded, teacher-embedded
  and guarded against LFW test-split identities exactly as ``lrface distill`` does.
  The camera is estimated at the student's own input side, so only native
  low-resolution students (``lrface-tiny-16/24/32``) are accepted, not ``lrface-mbf``.

``bn``: the method is batch-norm re-estimation (AdaBN, Li et al. 2016): the student's weights stay
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

Neither method has labels, so neither calibrates a new threshold: the card keeps the
base model's thresholds and says so.  Output, like ``lrface distill``:
``<out>/<name>.pt`` (state dict) and ``<out>/<name>.json`` (a card the registry loads:
``lrface verify --model <out>/<name>.pt``), ``<name>`` = ``<base>-adapted``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrface.distill.camera_estimate import GRID, CameraEstimate, estimate_camera
from lrface.distill.camera_finetune import FinetuneSettings, finetune_for_camera
from lrface.errors import DatasetError, LrfaceError

if TYPE_CHECKING:
    from lrface.distill.faces import FaceSet

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


#: ``--method`` values; the first is the default (see the module docstring for why).
METHODS = ("bn", "degradation-match")
#: Largest student input side ``degradation-match`` accepts: the camera is estimated at that
#: side, so it must be the low resolution the student is for (not lrface-mbf's 112 px).
MAX_SIDE = 32
#: Reference HR faces the camera estimate degrades (a seeded choice among ``--hr-data``).
REFERENCE_FACES = 200


def _count_listed(data: str) -> int:
    from lrface.datasets.sources import list_folder, parse_source

    source = parse_source(f"unlabelled:{data}")
    return len(list_folder(source)[1])


def _has_batch_norm(net: Any) -> bool:
    import torch

    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def _hr_config(hr_data: str, out: str, teacher: str, batch_size: int) -> Any:
    """The :class:`DistillConfig` whose data settings load ``--hr-data`` as distill does
    (no identities held out for calibration: adapt calibrates nothing)."""
    from lrface.distill.config import DistillConfig

    return DistillConfig(
        data=hr_data, out=out, teacher=teacher, batch_size=batch_size, calib_identities=0
    )


def adapt(
    data: str,
    model: str,
    out: str,
    detector: str | None = None,
    progress: bool = True,
    method: str = METHODS[0],
    hr_data: str | None = None,
    settings: FinetuneSettings | None = None,
) -> dict[str, Any]:
    """Adapt the torch student ``model`` (a registered name or a ``.pt``/``.json`` card)
    to the unlabelled faces of ``data`` (a folder of photos or crops, or a .txt list) by
    ``method``; ``hr_data`` (a ``distill --data`` source of HR faces) is needed by
    ``degradation-match`` and refused by ``bn``; ``settings``: its fine-tuning (default:
    :class:`FinetuneSettings`).  Writes ``<out>/<base>-adapted.pt`` and its card; returns
    the card.  Every cheap check runs before detection, alignment or training."""
    import torch

    from lrface.datasets.sources import parse_source
    from lrface.distill.faces import load_source
    from lrface.faces.detect import DEFAULT_DETECTOR
    from lrface.io.fileio import atomic_write, check_writable, sha256_file, write_json_atomic
    from lrface.models.defaults import DEFAULTS
    from lrface.models.preprocess import InputFormat
    from lrface.models.registry import get_spec, torch_weights
    from lrface.models.torch_embedder import load_student_module

    if method not in METHODS:
        raise LrfaceError(f"--method {method}: choose {' or '.join(METHODS)}")
    if method == "bn" and hr_data is not None:
        raise LrfaceError("--hr-data is used only by --method degradation-match; drop it for bn")
    if method == "degradation-match" and hr_data is None:
        raise LrfaceError(
            "--method degradation-match needs --hr-data: unlabelled HR faces to distil on "
            "(a distill --data source, e.g. ../shared/data/lfw or unlabelled:photos/)"
        )
    settings = settings or FinetuneSettings()
    try:
        settings.check()
    except ValueError as e:
        raise LrfaceError(str(e)) from None
    check_writable(out, "dir", "--out")
    spec = get_spec(model)
    if spec.kind != "student":
        raise LrfaceError(f"--model {model}: a student (e.g. lrface-tiny-16), not a {spec.kind}")
    weights = torch_weights(spec)  # refuses an ONNX-only model in one line
    net = load_student_module(spec, weights)
    if method == "bn" and not _has_batch_norm(net):
        raise LrfaceError(
            f"--model {model}: its batch-norm is folded into its convolutions, so there are no "
            "statistics to re-estimate; adapt a student with BatchNorm layers (lrface-tiny-16, "
            "lrface-tiny-24, lrface-tiny-32), or use --method degradation-match"
        )
    listed = _count_listed(data)
    if listed < MIN_FACES:
        raise DatasetError(
            f"{data}: {listed} images listed; adapt needs at least {MIN_FACES} faces of the "
            "camera (more is better: a few hundred)"
        )
    base = spec.card or {}
    teacher_name = (base.get("teacher") or {}).get("name") or DEFAULTS.teacher
    hr_cfg = None
    if hr_data is not None:
        from lrface.distill.data import check_before_work

        hr_cfg = _hr_config(hr_data, out, teacher_name, min(settings.batch_size, 2))
        check_before_work(hr_cfg)  # sources parse and list images; before any slow step
    fmt = InputFormat.of(spec)
    if hr_data is not None and (fmt.size % 8 or fmt.size > MAX_SIDE):
        raise LrfaceError(
            f"--model {model}: degradation-match estimates the camera at the student's own "
            f"input side, which must be a multiple of 8 up to {MAX_SIDE} px (a native "
            f"low-resolution student: lrface-tiny-16/24/32); this one takes {fmt.size} px"
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
    if hr_cfg is None:
        crops = np.stack([part.faces.crops[i] for i in range(n)])
        layers = bn_statistics_from(net, crops, fmt)
        how: dict[str, Any] = {
            "method": f"batch-norm statistics re-estimated on the camera's faces and their "
            f"mirrors ({layers} layers; cumulative average; weights unchanged)",
        }
    else:
        pixels, read = camera_pixels(part.faces, fmt.size)
        how = _degradation_match(net, pixels, hr_cfg, teacher_name, fmt, settings, progress)
        how["camera_estimate"]["input"] = read
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
            "method_name": method,
            **how,
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
    log.info("adapted %s (%s) on %d faces of %s -> %s", spec.name, method, n, data, pt)
    return card


def _degradation_match(
    net: Any,
    camera: np.ndarray,
    hr_cfg: Any,
    teacher_name: str,
    fmt: Any,
    settings: FinetuneSettings,
    progress: bool,
) -> dict[str, Any]:
    """Estimate the camera from ``camera`` (N, 112, 112, 3) uint8 BGR aligned faces, then
    fine-tune ``net`` on the HR faces of ``hr_cfg`` (loaded, teacher-embedded and guarded
    as ``distill`` does); returns the card's description of both."""
    from lrface.distill.data import display_path, training_data_for
    from lrface.models.loader import load_embedder

    teacher = load_embedder(teacher_name, flip=False)
    td = training_data_for(hr_cfg, teacher, progress)
    hr = td.faces.crops
    estimate = estimate_with_reference(camera, hr, fmt.size, settings.seed)
    log.info("camera estimate: %s", estimate.draw.describe())
    history = finetune_for_camera(net, hr, td.fused, estimate.draw, fmt, settings)
    return {
        "method": "degradation-match: the camera's blur, noise and JPEG estimated from its "
        "faces on a grid of the realistic recipe; the student distilled from the teacher "
        "on HR faces degraded by that estimate, mixed with clean views",
        "camera_estimate": estimate.card(),
        "estimate_grid": GRID.card(),
        "finetune": settings.card() | {"student_side_px": fmt.size},
        "loss_log": history,
        "teacher": teacher_name,
        "hr_data": {**td.summary(), **td.card(display_path)},
    }


def camera_pixels(faces: FaceSet, side: int) -> tuple[np.ndarray, str]:
    """What the camera estimate reads, and a line saying which.

    When every camera face is an image file of exactly ``side`` x ``side`` pixels (crops
    at the student's input size, as a camera pipeline may store them), the files' own
    pixels: uint8 BGR (N, side, side, 3).  Otherwise the aligned 112x112 crops (uint8 BGR
    (N, 112, 112, 3)), which :func:`estimate_camera` area-reduces to ``side``; alignment
    resamples the pixels (shifting JPEG's 8x8 grid and smoothing noise), so that estimate
    is less reliable (``docs/experiments/camera-adaptation.md``)."""
    import cv2

    own = []
    for rel in faces.paths:
        img = cv2.imread(str(Path(faces.root) / rel), cv2.IMREAD_COLOR)
        if img is None or img.shape[:2] != (side, side):
            break
        own.append(img)
    else:
        return np.stack(own), f"the image files' own pixels (every face a {side}x{side} crop)"
    crops = np.stack([faces.crops[i] for i in range(len(faces))])
    return crops, (
        f"aligned crops area-reduced to {side} px (the files are not all {side}x{side} "
        "crops; alignment resamples their pixels)"
    )


def estimate_with_reference(
    camera: np.ndarray, hr: Any, side: int, seed: int = 0
) -> CameraEstimate:
    """:func:`estimate_camera` of ``camera`` (N, h, w, 3) uint8 BGR faces against
    :data:`REFERENCE_FACES` of the HR faces ``hr`` (a sequence of uint8 BGR (112, 112, 3)
    crops), chosen with ``seed``."""
    m = len(hr)
    rows = np.sort(np.random.default_rng(seed).choice(m, min(m, REFERENCE_FACES), replace=False))
    reference = np.stack([hr[int(i)] for i in rows])
    return estimate_camera(camera, reference, side, GRID, seed)
