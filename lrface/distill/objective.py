"""The distillation objective: every loss term of a run and its schedule, one module.

``loss, parts = objective(student_out, target, sizes, idx, step)`` is the whole loss of a
training step.  The terms (:mod:`lrface.distill.losses`), in the order they are added:

* ``kd`` (always): ``1 - cos`` to the teacher target;
* ``nce`` (weight ``nce_weight``): instance-level cross-resolution InfoNCE;
* ``arc`` (weight ``arc_weight``): ArcFace over the training identities, whose class
  weights are the teacher's fixed identity prototypes; only labelled faces (not blends,
  not unlabelled faces) and, with ``arc_max_size``, only views reduced to that side;
* ``rkd`` (weight ``gamma``): RKD distance + angle;
* ``crcd`` (weight ``beta``): relational contrastive distillation, with the schedule of
  :meth:`Objective.crcd_weight`;
* ``lr_teacher`` (weight ``lr_teacher_weight``, with ``--lr-teacher``): ``1 - cos`` to a
  second teacher's embedding of the student's own LR input.

The CRCD relation heads (``objective.crcd``) are the objective's only parameters; the
trainer optimises them with the student (and DDP keeps them in sync).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrface.distill.config import DistillConfig
from lrface.distill.losses import (
    CRCDLoss,
    RKDLoss,
    cross_resolution_nce,
    identity_prototypes,
    kd_loss,
    prototype_arc_loss,
)
from lrface.errors import LrfaceError


class Objective(nn.Module):
    """The loss of ``cfg.losses`` (module docstring).

    ``labels``: int64 (N,) identity of each training face (-1: unlabelled) and
    ``targets``: float32 (N, D) its flip-fused teacher embedding -- the arc term's
    prototypes; ``device``: where the student trains; ``rank``: the torchrun rank (CRCD
    samples its pairs per rank).
    """

    def __init__(
        self,
        cfg: DistillConfig,
        labels: np.ndarray,
        targets: np.ndarray,
        device: torch.device,
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.cfg, self.rank = cfg, rank
        self.crcd: CRCDLoss | None = None
        if "crcd" in cfg.losses:
            self.crcd = CRCDLoss(
                dim=targets.shape[1],
                hidden=cfg.crcd_hidden,
                tau=cfg.crcd_tau,
                n_negatives=cfg.crcd_negatives,
                n_anchors=cfg.crcd_anchors,
                neg_reduction=cfg.crcd_neg_reduction,
            )
        self.rkd: RKDLoss | None = RKDLoss() if "rkd" in cfg.losses else None
        self.labels: torch.Tensor | None = None
        self.prototypes: torch.Tensor | None = None
        if "arc" in cfg.losses:
            all_labels = torch.from_numpy(labels)  # -1: unlabelled (no arc term)
            named = all_labels >= 0
            if not named.any():
                raise LrfaceError(
                    "--loss arc needs identity-labelled faces (an LFW copy, ROOT/<identity>/ "
                    "folders or a .rec pack); every --data source is unlabelled"
                )
            protos = identity_prototypes(torch.from_numpy(targets)[named], all_labels[named])
            self.prototypes = protos.to(device)
            self.labels = all_labels.to(device)

    def crcd_weight(self, step: int) -> float:
        """CRCD's weight at ``step``.  Warm-up (the first ``crcd_warmup_steps`` steps): the
        relation heads learn alone, on a detached student, with weight 1; then the
        gradient reaches the student with a weight rising linearly to ``beta`` over as many
        steps."""
        warmup = self.cfg.crcd_warmup_steps
        if step < warmup:
            return 1.0
        return self.cfg.beta * min(1.0, (step - warmup + 1) / max(1, warmup))

    def forward(
        self,
        student_out: torch.Tensor,
        target: torch.Tensor,
        sizes: torch.Tensor,
        idx: torch.Tensor,
        step: int,
        lr_target: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``student_out``: float (B, D) student embeddings (not normalised); ``target``:
        float (B, D) unit teacher embeddings, on the same device; ``sizes``: int64 (B,) LR
        side of each view; ``idx``: int64 (B,) index of each view's face (-1: a blend);
        ``step``: optimiser steps done (the schedules); ``lr_target``: float (B, D) unit
        embeddings of the student's inputs by ``--lr-teacher`` (None: no such term).
        Returns the scalar loss and each term's unweighted value (``parts``, logged as
        ``loss_<term>``)."""
        cfg = self.cfg
        s = F.normalize(student_out, dim=1)
        parts = {"kd": kd_loss(s, target)}
        loss = parts["kd"]
        if "nce" in cfg.losses:
            parts["nce"] = cross_resolution_nce(s, target, cfg.nce_tau)
            loss = loss + cfg.nce_weight * parts["nce"]
        if self.prototypes is not None and self.labels is not None:
            parts["arc"] = self._arc(s, sizes, idx, self.labels, self.prototypes)
            loss = loss + cfg.arc_weight * parts["arc"]
        if self.rkd is not None:
            parts["rkd"] = self.rkd(s, target)
            loss = loss + cfg.gamma * parts["rkd"]
        if self.crcd is not None:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + self.rank)
            warm = step < cfg.crcd_warmup_steps
            parts["crcd"] = self.crcd(s.detach() if warm else s, target, generator=gen)
            loss = loss + self.crcd_weight(step) * parts["crcd"]
        if lr_target is not None:
            parts["lr_teacher"] = kd_loss(s, lr_target.to(s.device))
            loss = loss + cfg.lr_teacher_weight * parts["lr_teacher"]
        return loss, parts

    def _arc(
        self,
        s: torch.Tensor,
        sizes: torch.Tensor,
        idx: torch.Tensor,
        labels: torch.Tensor,
        prototypes: torch.Tensor,
    ) -> torch.Tensor:
        """The arc term over the labelled views (all of them, or those reduced to at most
        ``arc_max_size``); 0 (with a gradient path) when the batch has none."""
        keep = idx >= 0  # a blend of two faces has no identity label
        if self.cfg.arc_max_size:  # e.g. only the small views, where arc helps
            keep &= sizes <= self.cfg.arc_max_size
        keep = keep.to(s.device)
        y_all = labels[idx.clamp(min=0).to(s.device)]
        keep &= y_all >= 0  # an unlabelled face has no class either
        s_arc, y = s[keep], y_all[keep]
        if not len(y):
            return s.sum() * 0.0  # no view small enough in this batch
        return prototype_arc_loss(s_arc, y, prototypes, self.cfg.arc_margin, self.cfg.arc_scale)
