"""Distillation losses: embedding KD, RKD (Park et al. 2019) and CRCD (Zhang et al.).

Notation: ``s`` student embeddings (B, D), ``t`` teacher embeddings (B, D) of the same
samples (teacher saw the HR crop, student a degraded copy).  Teacher tensors are
treated as constants (detached).  All losses return a scalar tensor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Embedding KD: mean over the batch of ``1 - cos(s_i, t_i)``; in [0, 2]."""
    return (1.0 - F.cosine_similarity(s, t.detach(), dim=1)).mean()


def feature_l2_loss(s_raw: torch.Tensor, t_raw: torch.Tensor) -> torch.Tensor:
    """Mean squared error between unnormalised features (optional KD term)."""
    return F.mse_loss(s_raw, t_raw.detach())


def _pdist(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    sq = (x * x).sum(1)
    d = (sq[:, None] + sq[None, :] - 2.0 * x @ x.t()).clamp_min(eps).sqrt()
    d = d.clone()
    d.fill_diagonal_(0.0)
    return d


def rkd_distance_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RKD distance term: smooth-L1 between mean-normalised pairwise distance matrices."""
    with torch.no_grad():
        td = _pdist(t)
        td = td / td[td > 0].mean()
    sd = _pdist(s)
    sd = sd / sd[sd > 0].mean()
    return F.smooth_l1_loss(sd, td)


def rkd_angle_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RKD angle term: smooth-L1 between cosines of angles in all triplets (B^3 memory)."""

    def angles(x: torch.Tensor) -> torch.Tensor:
        e = F.normalize(x[None, :, :] - x[:, None, :], p=2, dim=2)
        return torch.bmm(e, e.transpose(1, 2)).reshape(-1)

    with torch.no_grad():
        ta = angles(t)
    return F.smooth_l1_loss(angles(s), ta)


class RKDLoss(nn.Module):
    """``w_dist * distance + w_angle * angle`` (Park et al. use 25 and 50 on raw features;
    on L2-normalised embeddings 1 and 2 are the defaults here)."""

    def __init__(self, w_dist: float = 1.0, w_angle: float = 2.0) -> None:
        super().__init__()
        self.w_dist, self.w_angle = w_dist, w_angle

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.w_dist * rkd_distance_loss(s, t) + self.w_angle * rkd_angle_loss(s, t)


def _mlp(dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class CRCDLoss(nn.Module):
    """Cross-resolution relational contrastive distillation.

    Teacher relation ``v^t_ij = F^t(t_i - t_j)``, cross relation ``v^ts_ij = F^ts(t_i - s_j)``,
    critic ``h(a, b) = sigmoid(cos(a, b) / tau)``.  For each anchor pair (i, j), i != j,
    the matching cross relation ``v^ts_ij`` is the positive and ``v^ts_ik`` for other
    in-batch samples ``k != j`` are negatives::

        L = -mean_{(i,j)} [ log h(v^t_ij, v^ts_ij) + R_k log(1 - h(v^t_ij, v^ts_ik)) ]

    where ``R_k`` is a sum over the negatives (``neg_reduction="sum"``, the paper's form)
    or a mean (``"mean"``, which keeps the negative term's scale independent of K).

    Args (defaults in brackets):
        dim: embedding size [128].
        hidden: width of the relation MLPs' hidden layer [256].
        rel_dim: relation vector size [128].
        tau: critic temperature [0.1].
        n_negatives: negatives per anchor pair, sampled without replacement among k != j,
            or ``None`` for all B - 1 [16].
        n_anchors: anchor pairs per step, sampled uniformly among i != j, or ``None`` for
            all B (B - 1) pairs [1024].
        neg_reduction: ``"sum"`` or ``"mean"`` ["mean"].
    """

    def __init__(
        self,
        dim: int = 128,
        hidden: int = 256,
        rel_dim: int = 128,
        tau: float = 0.1,
        n_negatives: int | None = 16,
        n_anchors: int | None = 1024,
        neg_reduction: str = "mean",
    ) -> None:
        super().__init__()
        if neg_reduction not in ("sum", "mean"):
            raise ValueError("neg_reduction must be 'sum' or 'mean'")
        self.f_t = _mlp(dim, hidden, rel_dim)
        self.f_ts = _mlp(dim, hidden, rel_dim)
        self.tau = tau
        self.n_negatives = n_negatives
        self.n_anchors = n_anchors
        self.neg_reduction = neg_reduction

    def sample(
        self, b: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Anchor indices i, j (M,) and negative indices k (M, K) with i != j, k != j."""
        ii, jj = torch.meshgrid(torch.arange(b), torch.arange(b), indexing="ij")
        mask = ii != jj
        ii, jj = ii[mask], jj[mask]
        if self.n_anchors is not None and self.n_anchors < ii.numel():
            sel = torch.randperm(ii.numel(), generator=generator)[: self.n_anchors]
            ii, jj = ii[sel], jj[sel]
        m = ii.numel()
        k_all = b - 1
        n_neg = k_all if self.n_negatives is None else min(self.n_negatives, k_all)
        # Draw from 0..b-2 and skip j: value >= j shifts up by one.
        scores = torch.rand(m, k_all, generator=generator)
        kk = scores.argsort(dim=1)[:, :n_neg]
        kk = kk + (kk >= jj[:, None]).long()
        dev = device or torch.device("cpu")
        return ii.to(dev), jj.to(dev), kk.to(dev)

    def critic(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logit of h: ``cos(a, b) / tau`` along the last axis."""
        return F.cosine_similarity(a, b, dim=-1) / self.tau

    def forward(
        self,
        s: torch.Tensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        indices: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        t = t.detach()
        ii, jj, kk = indices if indices is not None else self.sample(len(s), generator, s.device)
        v_t = self.f_t(t[ii] - t[jj])  # (M, R)
        v_pos = self.f_ts(t[ii] - s[jj])  # (M, R)
        v_neg = self.f_ts(t[ii][:, None, :] - s[kk])  # (M, K, R)
        pos = F.logsigmoid(self.critic(v_t, v_pos))  # log h
        neg = F.logsigmoid(-self.critic(v_t[:, None, :], v_neg))  # log(1 - h)
        neg = neg.sum(1) if self.neg_reduction == "sum" else neg.mean(1)
        return -(pos + neg).mean()


def cross_resolution_nce(s: torch.Tensor, t: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """Instance-level cross-resolution InfoNCE: each student embedding ``s_i`` must pick its
    own teacher embedding ``t_i`` among the batch's teacher embeddings (in-batch negatives).

    ``-mean_i log softmax_j(cos(s_i, t_j) / tau)[i]``; inputs (B, D).  Optional term
    (``--loss kd,crcd,nce``), an ablation beside CRCD's relation-level contrast.
    """
    logits = F.normalize(s, dim=1) @ F.normalize(t.detach(), dim=1).t() / tau
    return F.cross_entropy(logits, torch.arange(len(s), device=s.device))


def identity_prototypes(targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Teacher prototypes of the training identities: the L2-normalised mean teacher
    embedding of each identity's images.

    ``targets``: float (N, D) teacher embeddings; ``labels``: int64 (N,) identity indices
    0..C-1.  Returns float (C, D), unit rows, detached (prototypes stay fixed: they keep
    the student in the teacher's space).
    """
    n_ids = int(labels.max()) + 1
    protos = torch.zeros(n_ids, targets.shape[1], dtype=targets.dtype, device=targets.device)
    protos.index_add_(0, labels, targets.detach())
    return F.normalize(protos, dim=1)


def prototype_arc_loss(
    s: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    margin: float = 0.3,
    scale: float = 32.0,
) -> torch.Tensor:
    """ArcFace (additive angular margin) over the training identities, with the teacher's
    identity prototypes as fixed class weights.

    ``s``: student embeddings (B, D); ``labels``: int64 (B,) identity indices;
    ``prototypes``: (C, D) unit rows (:func:`identity_prototypes`).  The logit of the true
    identity is ``scale * cos(theta + margin)`` (``cos(theta) - margin * sin(margin)`` once
    ``theta + margin`` passes pi, as insightface's "easy margin off"), the others
    ``scale * cos(theta_j)``; returns the mean cross-entropy.  Every training identity is a
    negative for every sample, which in-batch contrast (CRCD, InfoNCE) cannot offer.
    """
    cos = (F.normalize(s, dim=1) @ prototypes.detach().t()).clamp(-1 + 1e-7, 1 - 1e-7)
    cos_y = cos.gather(1, labels[:, None])
    sin_y = (1.0 - cos_y * cos_y).sqrt()
    cm, sm = math.cos(margin), math.sin(margin)
    with_margin = cos_y * cm - sin_y * sm
    with_margin = torch.where(cos_y > math.cos(math.pi - margin), with_margin, cos_y - margin * sm)
    logits = cos.scatter(1, labels[:, None], with_margin) * scale
    return F.cross_entropy(logits, labels)
