"""Validation during distillation: hr-lr accuracy on LFW pairs that are not the test split."""

from __future__ import annotations

import numpy as np
import torch

from lrface.distill.config import DistillConfig
from lrface.distill.data import TrainingData
from lrface.faces.degrade import Degradation, degrade
from lrface.models.embedder import l2_normalize
from lrface.models.interface import Embedder
from lrface.models.preprocess import InputFormat, to_input
from lrface.scores import kfold_accuracy


class Validator:
    """hr-lr accuracy on LFW pairs: teacher HR embedding vs student LR embedding.

    Pairs: folds 1-5 (images of the training identities), or with ``holdout_folds`` the
    pairs of those folds, whose identities were removed from the training data.
    The first image of each pair is embedded by the teacher (flip fusion, from the cached
    targets ``{LFW path: float32 (D,)}``; ``teacher`` embeds the ones missing), the second
    is reduced to ``s x s`` (area) for each of ``sizes`` and embedded by the student (flip
    fusion).  Accuracy: cross-validated thresholds over the LFW folds, as the test
    protocol (one held-out fold: 10 interleaved sub-folds).
    """

    def __init__(
        self,
        data: str,
        targets: dict[str, np.ndarray],
        sizes: tuple[int, ...],
        teacher: Embedder | None = None,
        holdout_folds: tuple[int, ...] = (),
    ) -> None:
        from lrface.datasets.lfw import LFW
        from lrface.distill.faces import lfw_crops

        lfw = LFW(data)
        pairs = lfw.pairs_in_folds(holdout_folds) if holdout_folds else lfw.split_pairs("val")
        self.pairs = pairs
        rels = sorted({p.a for p in pairs} | {p.b for p in pairs})
        crops = lfw_crops(lfw, rels)
        index = {p: i for i, p in enumerate(rels)}
        self.crops_b = crops[[index[p.b] for p in pairs]]
        self.crops_a = crops[[index[p.a] for p in pairs]]
        missing = [i for i, p in enumerate(pairs) if p.a not in targets]
        if missing:  # e.g. a --limit run: embed the missing HR images with the teacher
            if teacher is None:
                raise ValueError("the teacher is needed for HR images without a target")
            emb = teacher.embed_crops(list(self.crops_a[missing]), flip=True)
            targets = dict(targets)
            for i, e in zip(missing, emb):
                targets[pairs[i].a] = e
        self.hr = np.stack([targets[p.a] for p in pairs])
        self.labels = np.array([p.same for p in pairs], dtype=np.int64)
        self.folds = np.array([p.fold for p in pairs])
        if len(set(self.folds.tolist())) < 2:  # one held-out fold: 10 interleaved sub-folds
            self.folds = np.arange(len(pairs)) % 10
        self.description = (
            f"LFW pairs of folds {','.join(map(str, holdout_folds))} (identities held out "
            "of training)"
            if holdout_folds
            else "LFW pairs of folds 1-5 (training images of train identities)"
        )
        self.sizes = sizes

    @classmethod
    def for_run(cls, cfg: DistillConfig, td: TrainingData, teacher: Embedder) -> Validator | None:
        """The validator of a run: on the LFW source's pairs (its cached flip-fused
        targets), or None without an LFW source or with ``val_every`` 0."""
        lfw_part = td.lfw_part()
        if not cfg.val_every or lfw_part is None:
            return None
        k = td.parts.index(lfw_part)
        faces, fused = td.faces, td.fused
        targets = {p: fused[i] for i, p in enumerate(faces.paths) if faces.source[i] == k}
        return cls(str(lfw_part.source.path), targets, cfg.val_sizes, teacher, cfg.holdout_folds)

    def due(self, epoch: int, cfg: DistillConfig) -> bool:
        """Whether the epoch ``epoch`` (0-based) ends with a validation: every
        ``val_every`` epochs, and the last."""
        return (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs

    @staticmethod
    def student_embed(model: torch.nn.Module, crops: np.ndarray, fmt: InputFormat) -> np.ndarray:
        """Flip-fused student embeddings, float32 (N, D) L2-normalised, of uint8 BGR crops
        (N, h, w, 3) converted to the student's input ``fmt`` (its side, the teacher's
        colour order and mean/std) by :func:`lrface.models.preprocess.to_input`."""
        model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), 256):
                x = to_input(crops[i : i + 256], fmt)
                xt = torch.from_numpy(x)
                dev = next(model.parameters()).device
                xt = xt.to(dev).contiguous(memory_format=torch.channels_last)
                f = model(xt) + model(torch.flip(xt, dims=[3]))
                out.append(f.float().cpu().numpy())
        model.train()
        return l2_normalize(np.concatenate(out))

    def run(self, model: torch.nn.Module, fmt: InputFormat) -> dict[str, float]:
        """``{"val_hr-lr_<s>": accuracy %}`` for each validation size ``s``; ``fmt``: the
        student's input (:meth:`lrface.models.preprocess.InputFormat.of` the teacher's
        entry at the student's side)."""
        res = {}
        for s in self.sizes:
            lr = np.stack([degrade(c, Degradation(size=s)) for c in self.crops_b])
            emb = self.student_embed(model, lr, fmt)
            scores = (self.hr * emb).sum(1)
            acc = kfold_accuracy(scores, self.labels, folds=self.folds)
            res[f"val_hr-lr_{s}"] = round(100 * acc["accuracy_mean"], 2)
        return res
