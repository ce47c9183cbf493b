"""One crop-to-tensor conversion (lrface.models.preprocess): the embedders, the distillation
dataset, its validator and the online teacher give bit-identical input for the same crop,
in the colour order of the model's registry entry."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lrface.distill.dataset import DistillDataset
from lrface.distill.faces import FaceSet
from lrface.distill.validate import Validator
from lrface.faces.degrade import RandomDegradation
from lrface.models.embedder import EmbedderBase
from lrface.models.preprocess import InputFormat, to_input, to_input_torch


def _dataset_input(crop: np.ndarray, spec) -> np.ndarray:
    """The distillation dataset's x for an undegraded, unflipped, unjittered 112 crop."""
    faces = FaceSet(Path("."), ["face.jpg"], [""], crop[None])
    dummy = np.zeros((1, 128), np.float32)
    ds = DistillDataset(
        faces, dummy, dummy, spec.input_size, spec.mean, spec.std,
        RandomDegradation(p_hr=1.0), p_flip=0.0, p_jitter=0.0, color=spec.color,
    )  # fmt: skip
    return ds[0][0].numpy()[None]


def _validator_input(crop: np.ndarray, spec) -> np.ndarray:
    """What the validator feeds the student for ``crop`` (its first, unmirrored forward)."""
    seen = []
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    Validator.student_embed(model, crop[None], InputFormat.of(spec))
    return seen[0].numpy()


@pytest.mark.parametrize("side", [112, 16])
def test_embedder_dataset_and_validator_give_identical_tensors(teacher, aligned_crop, side):
    spec = dataclasses.replace(teacher.spec, input_size=side)
    want = EmbedderBase(spec).preprocess([aligned_crop])
    assert want.shape == (1, 3, side, side) and want.dtype == np.float32
    assert np.array_equal(_dataset_input(aligned_crop, spec), want)
    assert np.array_equal(_validator_input(aligned_crop, spec), want)
    assert np.array_equal(to_input(aligned_crop, spec), want)  # one (h, w, 3) crop
    if side == 112:  # the teacher itself and the online teacher's torch path
        assert np.array_equal(teacher.preprocess([aligned_crop]), want)
        got = to_input_torch(torch.from_numpy(aligned_crop[None]), spec).numpy()
        assert np.array_equal(got, want)


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_the_spec_colour_order_is_honoured(teacher, aligned_crop, color):
    mean, std = (10.0, 120.0, 200.0), (2.0, 50.0, 100.0)
    spec = dataclasses.replace(teacher.spec, color=color, mean=mean, std=std)
    order = [2, 1, 0] if color == "RGB" else [0, 1, 2]  # model channel -> BGR channel
    px = aligned_crop.astype(np.float32)
    want = np.stack(
        [(px[:, :, order[c]] - np.float32(mean[c])) / np.float32(std[c]) for c in range(3)]
    )[None]
    got = EmbedderBase(spec).preprocess([aligned_crop])
    assert np.array_equal(got, want)
    assert np.array_equal(_dataset_input(aligned_crop, spec), want)
    assert np.array_equal(_validator_input(aligned_crop, spec), want)
    assert np.array_equal(to_input_torch(torch.from_numpy(aligned_crop[None]), spec).numpy(), want)
    mirrored = to_input([aligned_crop], spec, mirrors=True)
    assert np.array_equal(mirrored[:1], want) and np.array_equal(mirrored[1:], want[..., ::-1])


def test_input_format_rejects_an_unknown_colour_order():
    with pytest.raises(ValueError, match="RGB or BGR"):
        InputFormat(112, "GRAY", (0.0,) * 3, (1.0,) * 3)
    with pytest.raises(ValueError, match="uint8"):
        to_input_torch(
            torch.zeros((1, 16, 16, 3), dtype=torch.uint8),
            InputFormat(112, "RGB", (0,) * 3, (1,) * 3),
        )
