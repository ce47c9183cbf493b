"""Distillation losses: shapes, gradient flow and values computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrface.distill.losses import (
    CRCDLoss,
    RKDLoss,
    identity_prototypes,
    kd_loss,
    prototype_arc_loss,
    rkd_angle_loss,
    rkd_distance_loss,
)


def test_kd_loss_known_values():
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    # cos = 1 and 0 -> mean(1 - cos) = 0.5
    loss = kd_loss(s, t)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert kd_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-7)


def test_rkd_zero_when_equal_and_positive_otherwise():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(8, 16), dim=1)
    assert rkd_distance_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_angle_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    # distances are scale-normalised: a scaled copy keeps the distance term at zero
    assert rkd_distance_loss(3 * t, t).item() == pytest.approx(0.0, abs=1e-6)
    s = F.normalize(torch.randn(8, 16), dim=1).requires_grad_()
    loss = RKDLoss()(s, t)
    assert loss.item() > 0
    loss.backward()
    assert s.grad.abs().sum() > 0


def _identity_crcd(tau=0.5, neg="sum"):
    """CRCD whose relation modules are the identity map (ReLU of a non-negative input)."""
    crcd = CRCDLoss(
        dim=2, hidden=2, rel_dim=2, tau=tau, n_negatives=None, n_anchors=None, neg_reduction=neg
    )
    for f in (crcd.f_t, crcd.f_ts):
        lin1, lin2 = f[0], f[2]
        with torch.no_grad():
            lin1.weight.copy_(torch.eye(2))
            lin1.bias.zero_()
            lin2.weight.copy_(torch.eye(2))
            lin2.bias.zero_()
    return crcd


def test_crcd_known_value_three_samples():
    # Teacher embeddings t and a student equal to t.  With identity relation modules
    # (inputs chosen so all differences are >= 0 component-wise after ReLU matters only
    # through the explicit index set below), compute the loss for one anchor pair by hand.
    t = torch.tensor([[2.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    s = t.clone()
    crcd = _identity_crcd(tau=0.5)
    ii = torch.tensor([0])
    jj = torch.tensor([1])
    kk = torch.tensor([[2]])
    loss = crcd(s, t, indices=(ii, jj, kk))
    # v_t = relu(t0 - t1) = (1, 2); v_pos = relu(t0 - s1) = (1, 2): cos = 1
    # v_neg = relu(t0 - s2) = (2, 1): cos((1,2),(2,1)) = 4/5
    # L = -[log sigmoid(1/0.5) + log(1 - sigmoid(0.8/0.5))]
    expected = -(math.log(1 / (1 + math.exp(-2.0))) + math.log(1 - 1 / (1 + math.exp(-1.6))))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_crcd_sampling_excludes_positive_and_self():
    crcd = CRCDLoss(dim=4, n_negatives=5, n_anchors=50)
    g = torch.Generator().manual_seed(0)
    ii, jj, kk = crcd.sample(8, g)
    assert ii.shape == (50,) and kk.shape == (50, 5)
    assert (ii != jj).all()
    assert (kk != jj[:, None]).all()
    assert ((kk >= 0) & (kk < 8)).all()
    # negatives of one anchor are distinct
    assert all(len(set(row.tolist())) == 5 for row in kk)


def test_crcd_all_pairs_and_gradients_reach_student_and_heads():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(6, 8), dim=1)
    student = nn.Linear(8, 8)
    crcd = CRCDLoss(dim=8, hidden=16, rel_dim=8, n_negatives=None, n_anchors=None)
    s = F.normalize(student(t + 0.1 * torch.randn(6, 8)), dim=1)
    loss = crcd(s, t)
    assert loss.ndim == 0 and torch.isfinite(loss)
    ii, _, kk = crcd.sample(6)
    assert ii.numel() == 30 and kk.shape == (30, 5)
    loss.backward()
    assert student.weight.grad.abs().sum() > 0
    assert crcd.f_t[0].weight.grad.abs().sum() > 0
    assert crcd.f_ts[0].weight.grad.abs().sum() > 0


def test_crcd_prefers_matching_student():
    """Training the heads briefly, a student equal to the teacher scores a lower loss
    than a student whose rows are shuffled (the contrastive signal points the right way)."""
    torch.manual_seed(0)
    t = F.normalize(torch.randn(16, 8), dim=1)
    crcd = CRCDLoss(dim=8, hidden=32, rel_dim=8, tau=0.2, n_negatives=None, n_anchors=None)
    opt = torch.optim.Adam(crcd.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        crcd(t, t).backward()
        opt.step()
    with torch.no_grad():
        good = crcd(t, t).item()
        bad = crcd(t[torch.randperm(16)], t).item()
    assert good < bad


def test_identity_prototypes_are_unit_means():
    t = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    protos = identity_prototypes(t, torch.tensor([0, 0, 1]))
    assert protos.shape == (2, 2)
    assert torch.allclose(protos[0], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    assert torch.allclose(protos[1], torch.tensor([-1.0, 0.0]))


def test_prototype_arc_loss_known_value_and_margin():
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    theta = 0.4  # student 0.4 rad away from its own prototype (identity 0)
    s = torch.tensor([[math.cos(theta), math.sin(theta)]], requires_grad=True)
    y = torch.tensor([0])
    m, scale = 0.3, 10.0
    loss = prototype_arc_loss(s, y, protos, margin=m, scale=scale)
    true_logit, other_logit = scale * math.cos(theta + m), scale * math.sin(theta)
    expected = -true_logit + math.log(math.exp(true_logit) + math.exp(other_logit))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    no_margin = prototype_arc_loss(s, y, protos, margin=0.0, scale=scale)
    assert no_margin.item() < loss.item()  # the margin makes the task harder
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    # the student is pulled towards its prototype: a step against the gradient lowers the loss
    s2 = (s - 0.05 * s.grad).detach()
    assert prototype_arc_loss(s2, y, protos, margin=m, scale=scale).item() < loss.item()


def test_prototype_arc_loss_past_pi_stays_monotone():
    """Beyond theta = pi - m the margin form would turn back up; the fallback keeps the
    true-class logit decreasing in theta (insightface's non-easy margin)."""
    protos = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # other logit stays 0
    y = torch.tensor([0])
    losses = [
        prototype_arc_loss(torch.tensor([[math.cos(a), math.sin(a), 0.0]]), y, protos, margin=0.5)
        for a in (2.4, 2.7, 3.0)
    ]
    assert losses[0] < losses[1] < losses[2]
