"""Distil a student for one camera (``lrface adapt --method degradation-match``, step 2).

Given the camera's estimated degradation (:mod:`lrface.distill.camera_estimate`) and HR
faces with their flip-fused teacher embeddings (distill's training data), fine-tune the
student on views of those HR faces: each view is the aligned 112x112 crop, mirrored with
probability 1/2, area-reduced to the student's side, and then, with probability
``p_camera``, degraded by the estimated camera (:func:`lrface.faces.degrade.apply_realistic`,
fresh noise per view); the other views stay clean (they protect clean probes).  Target:
the HR crop's flip-fused teacher embedding.  Loss: the shipped ``lrface-tiny-16``'s
recipe, KD (``1 - cos``) + ``nce_weight`` x instance InfoNCE (:mod:`lrface.distill.losses`).
AdamW, linear warm-up then cosine decay to 0; batch-norm in training mode.  The camera's
own faces never reach the loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from lrface.faces.degrade import RealisticDraw, apply_realistic


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """The fine-tuning of ``degradation-match`` (defaults: the values fixed by the rule of
    ``docs/experiments/camera-adaptation.md``, round 2)."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 5e-3
    warmup_steps: int = 30
    p_camera: float = 0.5
    nce_weight: float = 0.1
    nce_tau: float = 0.05
    seed: int = 0

    def check(self) -> None:
        """One-line ``ValueError`` for a setting out of range."""
        if self.steps < 1:
            raise ValueError(f"--steps {self.steps}: at least 1")
        if self.batch_size < 2:
            raise ValueError(f"--batch-size {self.batch_size}: at least 2 (InfoNCE needs pairs)")
        if not 0.0 <= self.p_camera <= 1.0:
            raise ValueError(f"p_camera {self.p_camera}: a probability in [0, 1]")

    def card(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def camera_views(
    crops: Sequence[np.ndarray],
    rows: np.ndarray,
    draw: RealisticDraw,
    side: int,
    p_camera: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Views of HR faces ``crops[rows]`` (each uint8 BGR (112, 112, 3)).

    Returns uint8 BGR (B, side, side, 3) views and bool (B,) which of them were degraded
    by ``draw``.  Draws from ``rng``, per view in order: mirror?, camera?, then the noise
    field of a camera view."""
    out, used = [], []
    for r in rows:
        c = crops[int(r)]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        v = cv2.resize(np.ascontiguousarray(c), (side, side), interpolation=cv2.INTER_AREA)
        cam = bool(rng.random() < p_camera)
        if cam:
            v = apply_realistic(v, draw, rng)
        out.append(v)
        used.append(cam)
    return np.stack(out), np.array(used)


def lr_at(step: int, s: FinetuneSettings) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``steps``."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    prog = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return s.lr * 0.5 * (1.0 + math.cos(math.pi * min(prog, 1.0)))


def finetune_for_camera(
    net: Any,
    crops: Sequence[np.ndarray],
    targets: np.ndarray,
    draw: RealisticDraw,
    fmt: Any,
    settings: FinetuneSettings = FinetuneSettings(),
    log_every: int = 50,
) -> list[dict[str, float]]:
    """Fine-tune ``net`` (a torch student module, modified in place, left in eval mode).

    ``crops``: N aligned HR faces, uint8 BGR (112, 112, 3) each; ``targets``: float32
    (N, D) their unit flip-fused teacher embeddings; ``draw``: the camera; ``fmt``: the
    student's :class:`~lrface.models.preprocess.InputFormat` (side, colour order,
    mean/std).  Faces are drawn in seeded shuffled passes.  Returns the loss log: one row
    (``step``, ``kd``, ``nce``, ``lr``) every ``log_every`` steps and at the last.
    """
    import torch

    from lrface.distill.losses import cross_resolution_nce, kd_loss
    from lrface.models.preprocess import to_input

    settings.check()
    n = len(crops)
    if n < 2:
        raise ValueError(f"need at least 2 HR faces to fine-tune, got {n}")
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    tgt = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    batch = min(settings.batch_size, n)
    order = rng.permutation(n)
    pos = 0
    history: list[dict[str, float]] = []
    sums = {"kd": 0.0, "nce": 0.0}
    done = 0
    net.train()
    try:
        for step in range(settings.steps):
            if pos + batch > n:
                order, pos = rng.permutation(n), 0
            rows = order[pos : pos + batch]
            pos += batch
            views, _ = camera_views(crops, rows, draw, fmt.size, settings.p_camera, rng)
            x = torch.from_numpy(to_input(views, fmt))
            s = torch.nn.functional.normalize(net(x), dim=1)
            t = tgt[torch.from_numpy(rows)]
            kd = kd_loss(s, t)
            nce = cross_resolution_nce(s, t, settings.nce_tau)
            loss = kd + settings.nce_weight * nce
            lr = lr_at(step, settings)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["kd"] += float(kd.detach())
            sums["nce"] += float(nce.detach())
            done += 1
            if (step + 1) % log_every == 0 or step + 1 == settings.steps:
                history.append(
                    {"step": step + 1, "lr": lr} | {k: round(v / done, 5) for k, v in sums.items()}
                )
                sums, done = {"kd": 0.0, "nce": 0.0}, 0
    finally:
        net.eval()
    return history
