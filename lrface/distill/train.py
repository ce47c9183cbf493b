"""The distillation trainer behind ``lrface distill``.

One process on CPU or GPU, or several under ``torchrun --nproc_per_node=N``
(DistributedDataParallel; gloo on CPU, nccl on GPU).  Each epoch ends with an atomic
checkpoint (``last.pt``), a validation on LFW pairs of folds 1-5 (identities disjoint
from the test split) logged to ``log.csv``/``history.json``, and ``best.pt`` when the
validation improves.  ``--resume`` restores model, optimiser, schedule and epoch; the
data order and degradations are pure functions of (seed, epoch, index), so a resumed run
continues exactly.  The final output is ``<name>.pt`` (weights of the best epoch) plus the
``<name>.json`` card that the registry loads.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..align import resize_crop
from ..degrade import Degradation, RandomDegradation, degrade
from ..detect import DEFAULT_DETECTOR
from ..errors import LrfaceError
from ..fileio import atomic_write, sha256_file, write_json_atomic
from ..models import registry
from ..models.embedder import l2_normalize
from ..models.loader import load_embedder
from ..models.students import (
    MBF_BLOCKS,
    TinyFaceNet,
    count_parameters,
    create_student,
    mobilefacenet_from_onnx,
    widen_mobilefacenet,
)
from ..models.torch_embedder import read_state
from . import LOSS_TERMS
from .data import DistillDataset, TrainingData, display_path, training_data_for
from .losses import (
    CRCDLoss,
    RKDLoss,
    cross_resolution_nce,
    identity_prototypes,
    kd_loss,
    prototype_arc_loss,
)
from .online import OnlineTeacher
from .views import build_box_views

log = logging.getLogger("lrface")

TARGETS = ("view", "fused", "online", "online-fused")


@dataclasses.dataclass
class DistillConfig:
    """Every knob of a distillation run (all stored in the card)."""

    data: str | tuple[str, ...]  # --data source(s): [KIND:]PATH[:weight=W] (datasets.sources)
    out: str
    teacher: str = "mobilefacenet-arcface"
    student: str = "lrface-mbf"  # lrface-mbf | lrface-tiny (-16/-24/-32)
    name: str | None = None
    input_size: int | None = None  # tiny: 16/24/32; mbf: 112
    min_size: int = 8
    max_size: int = 32
    p_hr: float = 0.1
    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    losses: tuple[str, ...] = ("kd",)
    beta: float = 1.0  # CRCD weight
    gamma: float = 1.0  # RKD weight
    nce_weight: float = 0.1
    nce_tau: float = 0.05
    arc_weight: float = 0.1  # ArcFace over the training identities (teacher prototypes)
    arc_margin: float = 0.3
    arc_scale: float = 32.0
    arc_max_size: int | None = None  # arc only on views reduced to <= this side (None: all)
    crcd_tau: float = 0.1
    crcd_negatives: int | None = 16
    crcd_anchors: int | None = 1024
    crcd_hidden: int = 256
    crcd_neg_reduction: str = "mean"
    crcd_warmup_steps: int = 100
    seed: int = 0
    limit: int | None = None
    val_sizes: tuple[int, ...] = (12, 16)
    val_every: int = 1
    workers: int = 0
    threads: int | None = None
    max_steps: int | None = None  # stop early (smoke tests)
    test_pairs: str | None = None
    save_rank_weights: bool = False  # debug/tests: every DDP rank writes rank<r>.pt at the end
    tiny_width: int = 64  # TinyFaceNet stem width (stages: 2x, 4x)
    tiny_head: int = 512  # TinyFaceNet head channels
    tiny_blocks: int = 3  # TinyFaceNet blocks per stage
    mbf_expand: int = 1  # MobileFaceNet inner width multiplier (>1: widened from the
    # teacher or a narrower --init, function-preserving, then trained)
    init: str | None = None  # start from this student (registry name or weights file)
    holdout_folds: tuple[int, ...] = ()  # official LFW folds (1-5) whose identities are
    # left out of training and whose pairs become the validation set (unseen identities)
    targets: str = "view"  # "view": teacher embedding of the (possibly mirrored) view;
    # "fused": flip-fused teacher embedding, as the HR side is embedded at test time;
    # "online": the teacher embeds each augmented HR view during training (stronger
    # augmentation: larger alignment jitter, brightness/contrast), "consistent teaching";
    # "online-fused": the same, with the teacher's flip-fused embedding of each view
    mixup: float = 0.0  # online targets: probability of a view blending two faces
    p_box: float = 0.0  # probability a view is the detector's box, jittered (distill.views)
    p_realistic: float = 0.0  # probability a reduced view gets the realistic degradation
    test_guard: bool = True  # drop unlabelled/RecordIO faces close to LFW test-split images
    guard_threshold: float | None = None  # cosine; None: datasets.guard.GUARD_THRESHOLD

    @property
    def arch(self) -> str:
        return "tiny" if self.student.startswith("lrface-tiny") else "mbf"

    def resolved_input_size(self) -> int:
        if self.input_size:
            return self.input_size
        if self.arch == "tiny":
            tail = self.student.rsplit("-", 1)[-1]
            return int(tail) if tail.isdigit() else 16
        return 112


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


class _Bundle(torch.nn.Module):
    """Student plus trainable loss heads, so DDP syncs them together."""

    def __init__(self, student: torch.nn.Module, crcd: CRCDLoss | None) -> None:
        super().__init__()
        self.student = student
        self.crcd = crcd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


def _dist_info() -> tuple[int, int]:
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, ws


def _lr_at(step: int, total: int, cfg: DistillConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    prog = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(prog, 1.0)))


class Validator:
    """hr-lr accuracy on LFW pairs: teacher HR embedding vs student LR embedding.

    Pairs: folds 1-5 (images of the training identities), or with ``holdout_folds`` the
    pairs of those folds, whose identities were removed from the training data.
    The first image of each pair is embedded by the teacher (flip fusion, from the cached
    targets), the second is reduced to ``s x s`` (area) and embedded by the student
    (flip fusion).  Accuracy: cross-validated thresholds over the LFW folds, as the
    test protocol (one held-out fold: 10 interleaved sub-folds).
    """

    def __init__(
        self,
        data: str,
        targets: dict[str, np.ndarray],
        sizes: tuple[int, ...],
        teacher=None,
        holdout_folds: tuple[int, ...] = (),
    ) -> None:
        from ..datasets.lfw import LFW
        from .data import lfw_crops

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
            flip = teacher.flip
            teacher.flip = True
            emb = teacher.embed_crops(list(self.crops_a[missing]))
            teacher.flip = flip
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

    def student_embed(
        self,
        model: torch.nn.Module,
        crops: np.ndarray,
        input_size: int,
        mean: np.ndarray,
        std: np.ndarray,
    ) -> np.ndarray:
        model.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), 256):
                x = np.stack([resize_crop(c, input_size) for c in crops[i : i + 256]]).astype(
                    np.float32
                )
                x = ((x[..., ::-1] - mean) / std).transpose(0, 3, 1, 2)
                xt = torch.from_numpy(np.ascontiguousarray(x))
                dev = next(model.parameters()).device
                xt = xt.to(dev).contiguous(memory_format=torch.channels_last)
                f = model(xt) + model(torch.flip(xt, dims=[3]))
                out.append(f.float().cpu().numpy())
        model.train()
        return l2_normalize(np.concatenate(out))

    def run(
        self, model: torch.nn.Module, input_size: int, mean: np.ndarray, std: np.ndarray
    ) -> dict[str, float]:
        from ..eval.metrics import kfold_accuracy

        res = {}
        for s in self.sizes:
            lr = np.stack([degrade(c, Degradation(size=s)) for c in self.crops_b])
            emb = self.student_embed(model, lr, input_size, mean, std)
            scores = (self.hr * emb).sum(1)
            acc = kfold_accuracy(scores, self.labels, folds=self.folds)
            res[f"val_hr-lr_{s}"] = round(100 * acc["accuracy_mean"], 2)
        return res

    def calibrate_threshold(
        self,
        model: torch.nn.Module,
        input_size: int,
        mean: np.ndarray,
        std: np.ndarray,
        sizes: tuple[int, ...] = (12, 16, 20, 24, 32),
    ) -> dict[str, Any]:
        """Threshold maximising accuracy on a mix of student-vs-student pairs of folds 1-5:
        HR-HR plus HR-LR at each of ``sizes`` (the situations ``lrface verify`` meets)."""
        from ..eval.metrics import best_threshold

        ea = self.student_embed(model, self.crops_a, input_size, mean, std)
        scores = [(ea * self.student_embed(model, self.crops_b, input_size, mean, std)).sum(1)]
        for s in sizes:
            lr = np.stack([degrade(c, Degradation(size=s)) for c in self.crops_b])
            scores.append((ea * self.student_embed(model, lr, input_size, mean, std)).sum(1))
        all_scores = np.concatenate(scores)
        labels = np.tile(self.labels, len(scores))
        thr, acc = best_threshold(all_scores, labels)
        return {
            "threshold": round(float(thr), 4),
            "calibration_accuracy": round(100 * acc, 2),
            "threshold_note": f"max accuracy on {self.description}, student vs student, "
            f"HR-HR plus HR-LR at {','.join(map(str, sizes))} px (area-down)",
        }


def _match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give loaded optimiser moments the memory layout of their parameters (channels_last),
    so a resumed run computes bit-identical updates."""
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            for k, v in st.items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    st[k] = torch.empty_like(p).copy_(v)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_write(path, "wb") as fh:
        torch.save(state, fh)


def distill(cfg: DistillConfig, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run a distillation; returns the final card (also written to ``out/<name>.json``)."""
    if cfg.targets not in TARGETS:
        raise LrfaceError(f"targets={cfg.targets!r}: use {', '.join(TARGETS)}")
    online = cfg.targets.startswith("online")
    if not 0.0 <= cfg.mixup <= 1.0 or (cfg.mixup and not online):
        raise LrfaceError(
            f"--mixup {cfg.mixup}: a probability in [0, 1], and blended views need "
            "--targets online or online-fused (the teacher must embed the blend)"
        )
    for flag, p in (("--p-box", cfg.p_box), ("--p-realistic", cfg.p_realistic)):
        if not 0.0 <= p <= 1.0 or (p and online):
            raise LrfaceError(
                f"{flag} {p}: a probability in [0, 1], with cached targets (--targets view "
                "or fused; online targets embed the augmented aligned view)"
            )
    if cfg.mbf_expand < 1 or (cfg.mbf_expand > 1 and cfg.arch != "mbf"):
        raise LrfaceError(
            f"--mbf-expand {cfg.mbf_expand}: an integer >= 1, for lrface-mbf students only "
            "(tiny students: --width / --head-channels / --blocks)"
        )
    unknown = sorted(set(cfg.losses) - set(LOSS_TERMS))
    if unknown:
        raise LrfaceError(f"--loss: unknown term(s) {unknown}; use {', '.join(LOSS_TERMS)}")
    rank, world = _dist_info()
    distributed = world > 1
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    name = cfg.name or (
        cfg.student
        if cfg.arch == "mbf" or cfg.student[-1].isdigit()
        else f"{cfg.student}-{cfg.resolved_input_size()}"
    )
    input_size = cfg.resolved_input_size()

    teacher = load_embedder(cfg.teacher, flip=False)
    tspec = teacher.spec
    td = training_data_for(cfg, teacher, progress and rank == 0)
    faces, plain, mirror = td.faces, td.plain, td.mirror
    if rank == 0:
        write_json_atomic(out / "data_report.json", td.report())  # every skipped/dropped path
        log.info("data: %s", ", ".join(p.source.describe() for p in td.parts))
    fused = l2_normalize(plain + mirror)
    mean, std = np.asarray(tspec.mean, np.float32), np.asarray(tspec.std, np.float32)

    if cfg.arch == "mbf":
        if tspec.runtime != "onnx" or tspec.input_size != 112:
            raise LrfaceError(
                f"{cfg.teacher}: lrface-mbf is initialised from a 112-px MobileFaceNet teacher ONNX"
            )
        student = mobilefacenet_from_onnx(registry.locate(tspec))
        arch_kwargs: dict[str, Any] = {}
        if cfg.mbf_expand > 1:
            arch_kwargs = {"expand_mult": cfg.mbf_expand}
    else:
        arch_kwargs = {"input_size": input_size, "embedding_size": teacher.embedding_size}
        defaults = inspect.signature(TinyFaceNet).parameters
        for key, value in (
            ("width", cfg.tiny_width),
            ("head_channels", cfg.tiny_head),
            ("blocks", cfg.tiny_blocks),
        ):
            if value != defaults[key].default:  # default-architecture cards stay as they were
                arch_kwargs[key] = value
        student = create_student("tiny", **arch_kwargs)
    init_sha256 = None
    if cfg.init:
        student, init_sha256 = _init_student(cfg.init, student, cfg.arch, arch_kwargs)
        if rank == 0:
            log.info("student initialised from %s", cfg.init)
    if cfg.arch == "mbf" and student.expand_mult != cfg.mbf_expand:
        if cfg.mbf_expand % student.expand_mult:
            raise LrfaceError(
                f"--init {cfg.init}: a MobileFaceNet of inner width x{student.expand_mult} "
                f"cannot become --mbf-expand {cfg.mbf_expand} (only widening is possible); "
                f"pass --mbf-expand {student.expand_mult} or a multiple of it"
            )
        student = widen_mobilefacenet(student, cfg.mbf_expand // student.expand_mult, seed=cfg.seed)
        if rank == 0:
            log.info("student widened to x%d inside (same function)", cfg.mbf_expand)
    crcd = None
    if "crcd" in cfg.losses:
        crcd = CRCDLoss(
            dim=teacher.embedding_size,
            hidden=cfg.crcd_hidden,
            tau=cfg.crcd_tau,
            n_negatives=cfg.crcd_negatives,
            n_anchors=cfg.crcd_anchors,
            neg_reduction=cfg.crcd_neg_reduction,
        )
    rkd = RKDLoss() if "rkd" in cfg.losses else None
    labels = prototypes = None
    if "arc" in cfg.losses:
        labels = torch.from_numpy(faces.labels)  # -1: unlabelled (no arc term)
        named = labels >= 0
        if not named.any():
            raise LrfaceError(
                "--loss arc needs identity-labelled faces (an LFW copy, ROOT/<identity>/ "
                "folders or a .rec pack); every --data source is unlabelled"
            )
        prototypes = identity_prototypes(torch.from_numpy(fused)[named], labels[named])
        prototypes = prototypes.to(device)
        labels = labels.to(device)
        if rank == 0:
            log.info("arc: %d training identities as classes", len(prototypes))
    student = student.to(memory_format=torch.channels_last)  # ~30 % faster convs on CPU
    bundle = _Bundle(student, crcd).to(device)
    opt = torch.optim.AdamW(bundle.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    box_views = None
    if cfg.p_box:
        box_views = build_box_views(td.parts, DEFAULT_DETECTOR, progress=progress and rank == 0)
        if not box_views.covered:
            raise LrfaceError(
                f"--p-box {cfg.p_box}: no training face has a detector box (RecordIO packs "
                "are pre-aligned); box views need photo sources (an LFW copy or folders)"
            )
        td.views = box_views.card()
        if rank == 0:
            log.info("box views: %d of %d faces", box_views.covered, len(box_views.row))
    ds = DistillDataset(
        faces,
        fused if cfg.targets == "fused" else plain,
        fused if cfg.targets == "fused" else mirror,
        input_size,
        tuple(mean),
        tuple(std),
        RandomDegradation(cfg.min_size, cfg.max_size, p_hr=cfg.p_hr),
        seed=cfg.seed,
        online=online,
        p_mix=cfg.mixup,
        box_views=box_views,
        p_box=cfg.p_box,
        p_realistic=cfg.p_realistic,
    )
    online_teacher = (
        OnlineTeacher(teacher, device, fuse_flips=cfg.targets == "online-fused") if online else None
    )
    per_rank_batch = max(2, cfg.batch_size // world)
    steps_per_epoch = td.epoch_size() // (per_rank_batch * world)
    if steps_per_epoch == 0:
        raise LrfaceError(
            f"{_data_list(cfg.data)}: {td.epoch_size()} draws per epoch ({len(ds)} faces) "
            f"are fewer than one batch of {cfg.batch_size}"
        )
    total_steps = steps_per_epoch * cfg.epochs

    start_epoch, step, history, best = 0, 0, [], -1.0
    if resume:
        ck = torch.load(resume, map_location="cpu", weights_only=False)
        bundle.load_state_dict(ck["bundle"])
        opt.load_state_dict(ck["optimizer"])
        _match_state_layout(opt)
        start_epoch, step, history, best = ck["epoch"], ck["step"], ck["history"], ck["best"]
        init_sha256 = ck.get("init_sha256", init_sha256)  # the file may have changed since
        if rank == 0:
            log.info("resumed from %s at epoch %d (step %d)", resume, start_epoch, step)
    model = torch.nn.parallel.DistributedDataParallel(bundle) if distributed else bundle

    validator = None
    lfw_part = td.lfw_part()
    if rank == 0 and cfg.val_every and lfw_part is not None:
        k = td.parts.index(lfw_part)
        targets = {p: fused[i] for i, p in enumerate(faces.paths) if faces.source[i] == k}
        validator = Validator(
            str(lfw_part.source.path), targets, cfg.val_sizes, teacher, cfg.holdout_folds
        )

    for epoch in range(start_epoch, cfg.epochs):
        ds.set_epoch(epoch)
        order = td.epoch_order(cfg.seed, epoch)  # weighted sources; repeats keyed i + r*N
        order = order[: steps_per_epoch * per_rank_batch * world]
        mine = order.reshape(steps_per_epoch, world, per_rank_batch)[:, rank].reshape(-1)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(ds, mine.tolist()),
            batch_size=per_rank_batch,
            shuffle=False,
            num_workers=cfg.workers,
            drop_last=True,
        )
        bundle.train()
        sums: dict[str, float] = {}
        n_batches = 0
        t0 = time.time()
        bar = tqdm(
            loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress or rank != 0
        )
        for x, target, sizes, hr, idx in bar:
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total_steps, cfg)
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            if online_teacher is not None:  # the teacher embeds the very HR view of x
                target = online_teacher(hr)
            target = target.to(device)
            s_raw = model(x)
            s = torch.nn.functional.normalize(s_raw, dim=1)
            terms = {"kd": kd_loss(s, target)}
            loss = terms["kd"]
            if "nce" in cfg.losses:
                terms["nce"] = cross_resolution_nce(s, target, cfg.nce_tau)
                loss = loss + cfg.nce_weight * terms["nce"]
            if prototypes is not None:
                keep = idx >= 0  # a blend of two faces has no identity label
                if cfg.arc_max_size:  # e.g. only the small views, where arc helps
                    keep &= sizes <= cfg.arc_max_size
                keep = keep.to(device)
                y_all = labels[idx.clamp(min=0).to(device)]
                keep &= y_all >= 0  # an unlabelled face has no class either
                s_arc, y = s[keep], y_all[keep]
                terms["arc"] = (
                    prototype_arc_loss(s_arc, y, prototypes, cfg.arc_margin, cfg.arc_scale)
                    if len(y)
                    else s.sum() * 0.0  # no view small enough in this batch
                )
                loss = loss + cfg.arc_weight * terms["arc"]
            if rkd is not None:
                terms["rkd"] = rkd(s, target)
                loss = loss + cfg.gamma * terms["rkd"]
            if crcd is not None:
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 97 + rank)
                warm = step < cfg.crcd_warmup_steps
                # Warm-up: the relation heads learn on a detached student first, then the
                # CRCD gradient reaches the student with a linearly rising weight.
                terms["crcd"] = bundle.crcd(s.detach() if warm else s, target, generator=gen)
                ramp = (
                    1.0
                    if warm
                    else min(
                        1.0, (step - cfg.crcd_warmup_steps + 1) / max(1, cfg.crcd_warmup_steps)
                    )
                )
                loss = loss + (cfg.beta * ramp if not warm else 1.0) * terms["crcd"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n_batches += 1
            n_done = n_batches
            bar.set_postfix(
                {k: f"{v / n_done:.4f}" for k, v in sums.items()}
                | {"img/s": f"{n_done * per_rank_batch * world / (time.time() - t0):.0f}"}
            )
            if cfg.max_steps and step >= cfg.max_steps:
                break
        n_batches = max(1, n_batches)
        if distributed:  # BN running statistics are per rank: take rank 0's everywhere
            for buf in bundle.buffers():
                dist.broadcast(buf, 0)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            **{f"loss_{k}": round(v / n_batches, 5) for k, v in sums.items()},
            "seconds": round(time.time() - t0, 1),
        }
        if rank == 0:
            if validator is not None and (
                (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs
            ):
                row.update(validator.run(bundle.student, input_size, mean, std))
            vals = [v for k, v in row.items() if k.startswith("val_")]
            if validator is None:
                score = -float(row["loss_kd"])
            else:  # epochs without validation never replace the best checkpoint
                score = float(np.mean(vals)) if vals else -math.inf
            history.append(row)
            state = {
                "bundle": bundle.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "history": history,
                "best": max(best, score),
                "config": dataclasses.asdict(cfg),
                "init_sha256": init_sha256,
            }
            _save_checkpoint(out / "last.pt", state)
            if score > best:
                best = score
                _save_checkpoint(
                    out / "best.pt",
                    {"model": bundle.student.state_dict(), "epoch": epoch + 1, "score": score},
                )
            _write_log(out, history)
            log.info("epoch %d: %s", epoch + 1, row)
            tqdm.write(f"epoch {epoch + 1}: " + ", ".join(f"{k}={v}" for k, v in row.items()))
        if distributed:
            dist.barrier()
        if cfg.max_steps and step >= cfg.max_steps:
            break

    if cfg.save_rank_weights:
        with atomic_write(out / f"rank{rank}.pt", "wb") as fh:
            torch.save(bundle.student.state_dict(), fh)
    card: dict[str, Any] = {}
    if rank == 0:
        card = _finish(
            cfg,
            out,
            name,
            input_size,
            arch_kwargs,
            bundle.student,
            tspec,
            teacher,
            td,
            history,
            validator,
            mean,
            std,
            init_sha256,
        )
    if distributed:
        dist.barrier()
    return card


def _init_student(
    init: str, student: torch.nn.Module, arch: str, arch_kwargs: dict[str, Any]
) -> tuple[torch.nn.Module, str]:
    """Load the weights of a registered student (name) or a weights file into ``student``;
    returns it with the sha256 of the file loaded (recorded in the card as ``init_sha256``).

    A MobileFaceNet init may have another inner width (``expand_mult``) than the run: the
    student is then rebuilt at the init's width, and the caller widens it.
    """
    path = Path(init)
    if not path.is_file():
        spec = registry.get_spec(init)
        if spec.kind != "student" or spec.arch != arch:
            raise LrfaceError(
                f"--init {init}: not a {arch} student; pass a student of the same kind"
            )
        if arch != "mbf" and (spec.card or {}).get("arch_kwargs", {}) != arch_kwargs:
            raise LrfaceError(f"--init {init}: architecture settings differ from this run's")
        path = registry.torch_weights(spec)
    state = read_state(path)
    if arch == "mbf":
        expand = state.get("blocks.0.expand.weight")
        width = 1 if expand is None else max(1, expand.shape[0] // (64 * MBF_BLOCKS[0][0]))
        if width != student.expand_mult:
            student = create_student("mbf", expand_mult=width)
    try:
        student.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise LrfaceError(f"--init {init}: weights do not fit this student ({exc})") from None
    return student, sha256_file(path)


def _data_list(data: str | tuple[str, ...]) -> str:
    return data if isinstance(data, str) else " + ".join(data)


def _data_card(cfg: DistillConfig, td: TrainingData) -> dict[str, Any]:
    """The card's ``data`` entry: every source (kind, path, weight, images used, faces
    skipped for no detection, faces dropped by the test-identity guard) and totals."""

    what = {
        "lfw": "LFW train split (identities disjoint from pairs folds 6-10)"
        + (
            f" minus the identities of folds {','.join(map(str, cfg.holdout_folds))}"
            if cfg.holdout_folds
            else ""
        ),
        "labelled": "user folder ROOT/<identity>/<images>",
        "unlabelled": "unlabelled photos (no identities)",
        "rec": "insightface RecordIO pack (pre-aligned 112x112)",
    }
    paths = [display_path(p.source.path) for p in td.parts]
    labels = td.faces.labels
    return {
        "path": paths[0] if len(paths) == 1 else paths,
        "split": "; ".join(what[p.source.kind] for p in td.parts),
        "images": len(td.faces),
        "identities": len(np.unique(labels[labels >= 0])),
        "unlabelled_images": int((labels < 0).sum()),
        **td.card(display_path),
        **({"box_views": td.views} if td.views else {}),
    }


def _write_log(out: Path, history: list[dict[str, Any]]) -> None:
    write_json_atomic(out / "history.json", history)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_write(out / "log.csv", "w") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def _finish(
    cfg,
    out,
    name,
    input_size,
    arch_kwargs,
    student,
    tspec,
    teacher,
    td: TrainingData,
    history,
    validator,
    mean,
    std,
    init_sha256: str | None = None,
) -> dict[str, Any]:
    best_path = out / "best.pt"
    best = (
        torch.load(best_path, map_location="cpu", weights_only=True)
        if best_path.is_file()
        else None
    )
    if best is not None:
        student.load_state_dict(best["model"])
    device = next(student.parameters()).device
    student = student.cpu().eval()
    weights = out / f"{name}.pt"
    with atomic_write(weights, "wb") as fh:  # saved first: calibration may be interrupted
        torch.save(student.state_dict(), fh)
    calib = {"threshold": None, "threshold_note": "not calibrated (no LFW validation pairs)"}
    if validator is not None:  # on the training device (a GPU calibrates in seconds)
        calib = validator.calibrate_threshold(student.to(device), input_size, mean, std)
        student.cpu()
    card = {
        "name": name,
        "kind": "student",
        "runtime": "torch",
        "arch": cfg.arch,
        "arch_kwargs": arch_kwargs,
        "weights_file": weights.name,
        "sha256": sha256_file(weights),
        "parameters": count_parameters(student),
        "input_size": input_size,
        "embedding_size": teacher.embedding_size,
        "preprocessing": {
            "color": "RGB",
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "note": "aligned ArcFace-template crop; resize to input_size (bicubic up, area down); "
            "(pixel - mean) / std; flip fusion at inference",
        },
        **calib,
        "teacher": {"name": tspec.name, "sha256": tspec.sha256},
        "data": _data_card(cfg, td),
        "training": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(cfg).items()
            if k not in ("data", "out")
        },
        "init_sha256": init_sha256,
        "epochs_trained": history[-1]["epoch"] if history else 0,
        "best_epoch": int(best["epoch"]) if best is not None else None,
        "validation": history[-1] if history else {},
        "validation_pairs": validator.description if validator is not None else None,
        "history": history,
        "git_commit": _git_commit(),
        "license": "Apache-2.0 (weights distilled by lrface from the Apache-2.0 teacher)",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(out / f"{name}.json", card)
    tqdm.write(json.dumps({"card": str(out / f"{name}.json"), "threshold": card["threshold"]}))
    return card
