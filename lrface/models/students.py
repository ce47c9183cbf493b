"""Torch students: the resolution-robust MobileFaceNet and the native low-resolution CNN.

Both map an aligned face crop to a 128-d embedding in the *teacher's* space, so their
embeddings can be compared with the teacher's (HR gallery, LR probe).

Each architecture is one class registered here by :func:`register` (timm's pattern): its
``arch`` name (what a card's ``"arch"`` names), whether it takes its ``input_size`` (the
card's ``input_size`` is passed to it: stored once) and the user-facing student names
``lrface distill --student`` accepts, each with the settings it stands for.  Adding an
architecture is one decorated class in this module.

- :class:`MobileFaceNet` (``arch="mbf"``): the teacher's architecture (112x112 input,
  batch-norm folded into the convolutions as in the shipped ONNX), built here from a
  short layer table and initialised from the teacher's ONNX initialisers
  (:func:`mobilefacenet_from_onnx`).
- :class:`TinyFaceNet` (``arch="tiny"``): a compact CNN that takes the crop at its real
  size (16, 24 or 32 px) without upsampling.

Inputs are float32 (N, 3, S, S), RGB, ``(pixel - mean) / std`` with the teacher's
ImageNet mean/std in pixel units (see :mod:`lrface.models.registry`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Arch:
    """One registered student architecture.

    ``build``: the class (``build(**arch_kwargs)`` -> module mapping float32
    (N, 3, S, S) to (N, D)); ``input_size``: the side it is built for when fixed (e.g.
    112), None when it takes ``input_size`` as an argument; ``students``: user-facing
    student names -> the ``arch_kwargs`` each stands for (an ``input_size`` among them is
    the student's input side); ``default_size``: the side of a sized architecture when
    neither its student name nor ``--input-size`` gives one.
    """

    name: str
    build: Callable[..., nn.Module]
    students: Mapping[str, Mapping[str, Any]]
    input_size: int | None = None
    default_size: int | None = None

    @property
    def sized(self) -> bool:
        """The architecture takes ``input_size`` as an argument (the card's, passed in)."""
        return self.input_size is None


#: The registered architectures, by ``arch`` name (:func:`register`).
ARCHS: dict[str, Arch] = {}
_M = TypeVar("_M", bound=type[nn.Module])


def register(
    name: str,
    students: Mapping[str, Mapping[str, Any]],
    *,
    input_size: int | None = None,
    default_size: int | None = None,
) -> Callable[[_M], _M]:
    """Class decorator: register an architecture as ``name`` (see :class:`Arch`)."""

    def add(cls: _M) -> _M:
        if name in ARCHS:
            raise ValueError(f"student architecture {name!r} is registered twice")
        ARCHS[name] = Arch(name, cls, students, input_size, default_size)
        return cls

    return add


def get_arch(name: str) -> Arch:
    """The registered architecture ``name``; ValueError naming the choices otherwise."""
    if name not in ARCHS:
        raise ValueError(f"unknown student architecture {name!r}; choose {', '.join(ARCHS)}")
    return ARCHS[name]


def student_names() -> dict[str, tuple[Arch, Mapping[str, Any]]]:
    """Every user-facing student name -> ``(its architecture, the arch_kwargs it means)``."""
    return {s: (a, kw) for a in ARCHS.values() for s, kw in a.students.items()}


# (expansion t, output channels c, repeats n, first stride s) of the MobileFaceNet body.
MBF_BLOCKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class _Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 linear project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = nn.Conv2d(cin, mid, 1)
        self.depthwise = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid)
        self.project = nn.Conv2d(mid, cout, 1)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.act(self.depthwise(self.act(self.expand(x)))))
        return x + y if self.residual else y


@register("mbf", {"lrface-mbf": {}}, input_size=112)
class MobileFaceNet(nn.Module):
    """MobileFaceNet (Chen et al. 2018) with folded batch-norm; 112x112 -> 128-d.

    ``expand_mult``: multiplies the expansion of every bottleneck (the inner, depthwise
    channels); 1 is the published network (and the teacher), 2 doubles the inner width
    (about 1.9x the parameters and 1.8x the multiply-adds).
    ``forward`` returns unnormalised features (N, 128) float32.
    """

    def __init__(self, embedding_size: int = 128, expand_mult: int = 1) -> None:
        super().__init__()
        if expand_mult < 1:
            raise ValueError(f"expand_mult must be >= 1, got {expand_mult}")
        self.expand_mult = expand_mult
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1)
        self.dw = nn.Conv2d(64, 64, 3, 1, 1, groups=64)
        self.pw = nn.Conv2d(64, 64, 1)
        blocks, cin = [], 64
        for t, c, n, s in MBF_BLOCKS:
            for i in range(n):
                blocks.append(_Bottleneck(cin, c, s if i == 0 else 1, t * expand_mult))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(cin, 512, 1)
        self.gdconv = nn.Conv2d(512, 512, 7, groups=512)
        self.linear = nn.Conv2d(512, embedding_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(self.conv1(x), 0, 6)
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        x = self.blocks(x)
        x = torch.clamp(self.conv2(x), 0, 6)
        return self.linear(self.gdconv(x)).flatten(1)

    def bottlenecks(self) -> list[_Bottleneck]:
        """The inverted-residual blocks of :attr:`blocks`, in order."""
        return [b for b in self.blocks if isinstance(b, _Bottleneck)]


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of one of our convolutions (every one has a bias: batch-norm is folded)."""
    if conv.bias is None:
        raise ValueError(f"{conv}: convolution without a bias")
    return conv.bias


def mobilefacenet_from_onnx(path: str | os.PathLike[str]) -> MobileFaceNet:
    """A :class:`MobileFaceNet` carrying the weights of the teacher ONNX at ``path``.

    The ONNX graph's ``Conv`` nodes, in graph order, correspond one-to-one to the
    module's convolutions in definition order; shapes are checked for each.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    model = MobileFaceNet()
    targets = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != len(targets):
        raise ValueError(f"{path}: {len(convs)} Conv nodes, MobileFaceNet has {len(targets)}")
    with torch.no_grad():
        for node, conv in zip(convs, targets):
            w = inits[node.input[1]]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(
                    f"{path}: conv {node.name} has shape {w.shape}, "
                    f"expected {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            _bias(conv).copy_(torch.from_numpy(np.array(inits[node.input[2]])))
    return model


@torch.no_grad()
def widen_mobilefacenet(model: MobileFaceNet, mult: int, seed: int = 0) -> MobileFaceNet:
    """A MobileFaceNet whose bottlenecks are ``mult`` times wider inside, computing the same
    function as ``model`` (Net2WiderNet): every inner channel is copied ``mult`` times
    (expand filter, bias and depthwise filter), and the copies share the channel's weight in
    the projection in random proportions (summing to 1), so they receive different
    gradients and can specialise.  Outputs agree to float precision.
    """
    if mult == 1:
        return model
    wide = MobileFaceNet(model.linear.out_channels, model.expand_mult * mult)
    src, dst = dict(model.named_parameters()), dict(wide.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    for name, p in dst.items():
        if p.shape == src[name].shape:
            p.copy_(src[name])
    for old, new in zip(model.bottlenecks(), wide.bottlenecks()):
        mid = old.expand.out_channels
        share = torch.rand(mult, mid, generator=gen) + 0.5  # random positive shares
        share = share / share.sum(0, keepdim=True)  # of each channel, summing to 1
        for k in range(mult):
            sl = slice(k * mid, (k + 1) * mid)
            new.expand.weight[sl] = old.expand.weight
            _bias(new.expand)[sl] = _bias(old.expand)
            new.depthwise.weight[sl] = old.depthwise.weight
            _bias(new.depthwise)[sl] = _bias(old.depthwise)
            new.project.weight[:, sl] = old.project.weight * share[k].view(1, mid, 1, 1)
        _bias(new.project).copy_(_bias(old.project))
    return wide


@register(
    "tiny",
    {
        "lrface-tiny": {},
        "lrface-tiny-16": {"input_size": 16},
        "lrface-tiny-24": {"input_size": 24},
        "lrface-tiny-32": {"input_size": 32},
    },
    default_size=16,
)
class TinyFaceNet(nn.Module):
    """Native low-resolution student: an S x S crop (S = 16, 24 or 32) -> 128-d.

    A stem at full input resolution (no early striding: every pixel of a 16-px face
    matters), two stages of depthwise-separable residual blocks with one stride-2 step
    each, then a global depthwise conv (as MobileFaceNet's GDConv) and a linear layer.
    ~0.5 M parameters; at 16 px about 15 MFLOPs (the teacher: ~220 MFLOPs).
    """

    def __init__(
        self,
        input_size: int = 16,
        embedding_size: int = 128,
        width: int = 64,
        head_channels: int = 512,
        blocks: int = 3,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        w, h = width, head_channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.PReLU(w),
            nn.Conv2d(w, w, 3, 1, 1, groups=w, bias=False),
            nn.BatchNorm2d(w),
            nn.PReLU(w),
        )
        self.stage1 = nn.Sequential(
            _SepBlock(w, 2 * w, 2), *[_SepBlock(2 * w, 2 * w, 1) for _ in range(blocks - 1)]
        )
        self.stage2 = nn.Sequential(
            _SepBlock(2 * w, 4 * w, 2), *[_SepBlock(4 * w, 4 * w, 1) for _ in range(blocks - 1)]
        )
        side = -(-input_size // 4)
        self.head = nn.Sequential(
            nn.Conv2d(4 * w, h, 1, bias=False),
            nn.BatchNorm2d(h),
            nn.PReLU(h),
            nn.Conv2d(h, h, side, groups=h, bias=False),
            nn.BatchNorm2d(h),
            nn.Flatten(),
            nn.Linear(h, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(self.stem(x))))


class _SepBlock(nn.Module):
    """Residual block: 1x1 expand, 3x3 depthwise (stride), 1x1 project, BN + PReLU."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 2) -> None:
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def create_student(arch: str, **kwargs: Any) -> nn.Module:
    """Instantiate a registered student architecture by name (:data:`ARCHS`), timm-style."""
    return get_arch(arch).build(**kwargs)


def create_for_input(
    arch: str, input_size: int | None, arch_kwargs: Mapping[str, Any]
) -> nn.Module:
    """The registered architecture ``arch`` as a card describes it: its ``arch_kwargs``
    and its ``input_size`` (stored once, in the card), passed to an architecture that
    takes it.  A card that also names ``input_size`` among its ``arch_kwargs`` (one
    written before the size was stored once, as the shipped cards) must give the same
    side; ValueError otherwise."""
    a, kwargs = get_arch(arch), dict(arch_kwargs)
    if not a.sized or input_size is None:
        return a.build(**kwargs)
    given = kwargs.pop("input_size", input_size)
    if given != input_size:
        raise ValueError(
            f"field 'input_size' says {input_size}, but its arch_kwargs say {given}"
        )
    return a.build(input_size=input_size, **kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
