"""The distillation trainer behind ``lrface distill``: :func:`distill`.

One process on CPU or GPU, or several under ``torchrun --nproc_per_node=N``
(DistributedDataParallel; gloo on CPU, nccl on GPU).  Each epoch ends with an atomic
checkpoint (``last.pt``), a validation on LFW pairs of folds 1-5 (identities disjoint
from the test split) logged to ``log.csv``/``history.json``, and ``best.pt`` when the
validation improves.  ``--resume`` restores model, optimiser, schedule and epoch; the
data order and degradations are pure functions of (seed, epoch, index), so a resumed run
continues exactly.  The final output is ``<name>.pt`` (weights of the best epoch) plus the
``<name>.json`` card that the registry loads.

The parts, one module each: :mod:`~lrface.distill.config` (settings and their checks),
:mod:`~lrface.distill.data` and :mod:`~lrface.distill.dataset` (faces, teacher targets,
degraded views), :mod:`~lrface.distill.students` (the student to start from),
:mod:`~lrface.distill.objective` (every loss term and its schedule),
:mod:`~lrface.distill.validate` (validation) and :mod:`~lrface.distill.card` (weights,
threshold and card).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from lrface.distill.card import write_card
from lrface.distill.config import DistillConfig
from lrface.distill.data import TrainingData, check_before_work, training_data_for
from lrface.distill.dataset import DistillDataset, training_dataset
from lrface.distill.objective import Objective
from lrface.distill.online import OnlineTeacher
from lrface.distill.students import Student, build_student
from lrface.distill.validate import Validator
from lrface.errors import LrfaceError
from lrface.io.fileio import atomic_write, write_json_atomic
from lrface.models.interface import Embedder
from lrface.models.loader import load_embedder
from lrface.models.preprocess import InputFormat

__all__ = ["DistillConfig", "distill"]

log = logging.getLogger("lrface")


def distill(cfg: DistillConfig, resume: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run a distillation; returns the final card (also written to ``out/<name>.json``)."""
    run = _set_up(cfg, progress)
    start_epoch, step = run.ckpt.resume(resume, run.rank) if resume else (0, 0)
    model = torch.nn.parallel.DistributedDataParallel(run.bundle) if run.world > 1 else run.bundle
    validator = Validator.for_run(cfg, run.td, run.teacher) if run.rank == 0 else None
    fmt = InputFormat.of(run.teacher.spec, cfg.resolved_input_size())  # the student's input

    for epoch in range(start_epoch, cfg.epochs):
        row, step = _train_epoch(run, model, epoch, step)
        if run.rank == 0:
            if validator is not None and validator.due(epoch, cfg):
                row.update(validator.run(run.bundle.student, fmt))
            run.ckpt.save(row, validated=validator is not None)
        if run.world > 1:
            dist.barrier()
        if cfg.max_steps and step >= cfg.max_steps:
            break

    if cfg.save_rank_weights:
        with atomic_write(Path(cfg.out) / f"rank{run.rank}.pt", "wb") as fh:
            torch.save(run.bundle.student.state_dict(), fh)
    card = {}
    if run.rank == 0:
        card = write_card(cfg, run.student, run.teacher, run.td, run.ckpt.history, validator)
    if run.world > 1:
        dist.barrier()
    return card


@dataclasses.dataclass
class _Run:
    """What a run trains with, built by :func:`_set_up`."""

    cfg: DistillConfig
    rank: int
    world: int
    device: torch.device
    show: bool  # progress bars: rank 0 only
    teacher: Embedder
    td: TrainingData
    student: Student
    objective: Objective
    bundle: _Bundle
    opt: torch.optim.Optimizer
    ds: DistillDataset
    online: OnlineTeacher | None  # embeds the very HR view of x (--targets online*)
    lr_teacher: OnlineTeacher | None  # embeds the student's own LR input (--lr-teacher)
    batch: int  # per rank
    steps_per_epoch: int
    ckpt: _Checkpoints

    @property
    def total_steps(self) -> int:
        """Steps of the whole run: the span of the lr schedule."""
        return self.steps_per_epoch * self.cfg.epochs


def _set_up(cfg: DistillConfig, progress: bool) -> _Run:
    """Check ``cfg``, join the process group and build, in this order (which fixes the
    random draws), teacher, training data (rank 0 writes ``data_report.json``), student,
    objective, optimiser, dataset and online teachers; ``progress``: bars on rank 0."""
    cfg.check()
    check_before_work(cfg)  # data, --out, batch: before any slow step
    rank, world, device = _start(cfg)
    show = progress and rank == 0
    out = Path(cfg.out)
    teacher = load_embedder(cfg.teacher, flip=False)
    lr_model = _lr_teacher_model(cfg, teacher)  # checked before any data work
    if cfg.init and cfg.arch != "mbf":  # --init must fit before the data work, too
        with torch.random.fork_rng():  # (the real build below draws the same numbers)
            build_student(cfg, teacher, verbose=False)
    td = training_data_for(cfg, teacher, show)
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves no folder
    if rank == 0:
        write_json_atomic(out / "data_report.json", td.report())  # every skipped/dropped path
        log.info("data: %s", ", ".join(p.source.describe() for p in td.parts))
    student = build_student(cfg, teacher, verbose=rank == 0)
    objective = Objective(cfg, td.faces.labels, td.fused, device, rank)
    # channels_last: ~30 % faster convs on CPU; Module.to(memory_format=...) works but is
    # missing from torch's overloads
    student.net = student.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    bundle = _Bundle(student.net, objective.crcd).to(device)
    opt = torch.optim.AdamW(bundle.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ds = training_dataset(cfg, td, teacher.spec, progress=show, verbose=rank == 0)
    online = None
    if cfg.online_targets:
        online = OnlineTeacher(teacher, device, fuse_flips=cfg.targets == "online-fused")
    lr_teacher = None if lr_model is None else OnlineTeacher(lr_model, device, fuse_flips=True)
    batch = max(2, cfg.batch_size // world)  # per rank
    steps_per_epoch = td.epoch_size() // (batch * world)
    if steps_per_epoch == 0:
        raise LrfaceError(
            f"{_data_list(cfg.data)}: {td.epoch_size()} draws per epoch ({len(ds)} faces) "
            f"are fewer than one batch of {cfg.batch_size}"
        )
    ckpt = _Checkpoints(cfg, bundle, opt, student)
    return _Run(cfg, rank, world, device, show, teacher, td, student, objective, bundle, opt,
                ds, online, lr_teacher, batch, steps_per_epoch, ckpt)  # fmt: skip


def _train_epoch(
    run: _Run, model: torch.nn.Module, epoch: int, step: int
) -> tuple[dict[str, Any], int]:
    """One epoch of ``model`` (the bundle, or its DDP wrapper) on this rank's batches, from
    global ``step``; stops early at ``--max-steps``.  Returns the epoch's log row
    (``epoch``, ``step``, loss means, seconds) and the step reached."""
    cfg, opt, device = run.cfg, run.opt, run.device
    loader = _epoch_loader(
        cfg, run.ds, run.td, epoch, run.rank, run.world, run.batch, run.steps_per_epoch
    )
    run.bundle.train()
    meter = _Meter(run.batch * run.world)
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not run.show)
    for x, target, sizes, hr, idx, view in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, run.total_steps, cfg)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        if run.online is not None:  # the teacher embeds the very HR view of x
            target = run.online(hr)
        lr_target = run.lr_teacher(view) if run.lr_teacher is not None else None
        loss, parts = run.objective(model(x), target.to(device), sizes, idx, step, lr_target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.set_postfix(meter.add(parts))
        if cfg.max_steps and step >= cfg.max_steps:
            break
    if run.world > 1:  # BN running statistics are per rank: take rank 0's everywhere
        for buf in run.bundle.buffers():
            dist.broadcast(buf, 0)
    return {"epoch": epoch + 1, "step": step, **meter.means()}, step


def _lr_teacher_model(cfg: DistillConfig, teacher: Embedder) -> Embedder | None:
    """The ``--lr-teacher`` model (None without one); one-line :class:`LrfaceError` when it
    cannot be loaded or does not embed into the teacher's space (its card's teacher)."""
    if cfg.lr_teacher is None:
        return None
    model = load_embedder(cfg.lr_teacher)
    own = (model.spec.card or {}).get("teacher", {}).get("name")
    if model.embedding_size != teacher.embedding_size or (
        model.spec.name != teacher.spec.name and own != teacher.spec.name
    ):
        raise LrfaceError(
            f"--lr-teacher {cfg.lr_teacher}: it does not embed into the space of the teacher "
            f"{teacher.spec.name} (give a student distilled from it, e.g. lrface-mbf)"
        )
    return model


class _Bundle(torch.nn.Module):
    """Student plus trainable loss heads, so DDP syncs them together (checkpoint keys
    ``student.*``, ``crcd.*``)."""

    def __init__(self, student: torch.nn.Module, crcd: torch.nn.Module | None) -> None:
        super().__init__()
        self.student = student
        self.crcd = crcd

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


def _start(cfg: DistillConfig) -> tuple[int, int, torch.device]:
    """``(rank, world size, device)`` of this process; joins the torchrun process group,
    sets the threads and seeds torch."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
    torch.manual_seed(cfg.seed)
    return rank, world, device


def _lr_at(step: int, total: int, cfg: DistillConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    prog = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(prog, 1.0)))


def _epoch_loader(
    cfg: DistillConfig,
    ds: DistillDataset,
    td: TrainingData,
    epoch: int,
    rank: int,
    world: int,
    batch: int,
    steps: int,
) -> torch.utils.data.DataLoader:
    """This rank's batches of ``epoch``: the epoch's weighted draw order
    (:meth:`TrainingData.epoch_order`; repeats keyed ``i + r * N``), cut to whole steps,
    each step's global batch split over the ranks."""
    ds.set_epoch(epoch)
    order = td.epoch_order(cfg.seed, epoch)[: steps * batch * world]
    mine = order.reshape(steps, world, batch)[:, rank].reshape(-1)
    return torch.utils.data.DataLoader(
        torch.utils.data.Subset(ds, mine.tolist()),
        batch_size=batch,
        shuffle=False,
        num_workers=cfg.workers,
        drop_last=True,
    )


class _Meter:
    """Running means of the loss terms of an epoch, and its throughput."""

    def __init__(self, images_per_step: int) -> None:
        self.images_per_step = images_per_step
        self.sums: dict[str, float] = {}
        self.n = 0
        self.t0 = time.time()

    def add(self, parts: dict[str, torch.Tensor]) -> dict[str, str]:
        """Count one step; returns the progress-bar postfix (means so far, img/s)."""
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach())
        self.n += 1
        rate = self.n * self.images_per_step / (time.time() - self.t0)
        return {k: f"{v / self.n:.4f}" for k, v in self.sums.items()} | {"img/s": f"{rate:.0f}"}

    def means(self) -> dict[str, float]:
        """``{"loss_<term>": mean, ..., "seconds": epoch time}``, the epoch's log row."""
        n = max(1, self.n)
        return {f"loss_{k}": round(v / n, 5) for k, v in self.sums.items()} | {
            "seconds": round(time.time() - self.t0, 1)
        }


class _Checkpoints:
    """The run's history and its files: ``last.pt`` (everything to resume) every epoch,
    ``best.pt`` (student weights) when the epoch's score beats the best so far,
    ``history.json`` and ``log.csv``.  Score: the mean validation accuracy; epochs without
    validation never replace the best checkpoint; a run without a validator scores
    ``-loss_kd``."""

    def __init__(
        self,
        cfg: DistillConfig,
        bundle: _Bundle,
        opt: torch.optim.Optimizer,
        student: Student,
    ) -> None:
        self.cfg, self.bundle, self.opt, self.student = cfg, bundle, opt, student
        self.out = Path(cfg.out)
        self.history: list[dict[str, Any]] = []
        self.best = -1.0

    def resume(self, path: str, rank: int) -> tuple[int, int]:
        """Restore model, optimiser, history and best score from a ``last.pt``; returns
        ``(epoch, step)`` to continue from."""
        ck = torch.load(path, map_location="cpu", weights_only=False)
        self.bundle.load_state_dict(ck["bundle"])
        self.opt.load_state_dict(ck["optimizer"])
        _match_state_layout(self.opt)
        self.history, self.best = ck["history"], ck["best"]
        # the init file may have changed since: keep the hash of the one trained from
        self.student.init_sha256 = ck.get("init_sha256", self.student.init_sha256)
        if rank == 0:
            log.info("resumed from %s at epoch %d (step %d)", path, ck["epoch"], ck["step"])
        return ck["epoch"], ck["step"]

    def save(self, row: dict[str, Any], validated: bool) -> None:
        """Record the epoch's ``row`` (``epoch``, ``step``, losses, validation) and write
        the files."""
        vals = [v for k, v in row.items() if k.startswith("val_")]
        if not validated:
            score = -float(row["loss_kd"])
        else:  # epochs without validation never replace the best checkpoint
            score = float(np.mean(vals)) if vals else -math.inf
        self.history.append(row)
        state = {
            "bundle": self.bundle.state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": row["epoch"],
            "step": row["step"],
            "history": self.history,
            "best": max(self.best, score),
            "config": dataclasses.asdict(self.cfg),
            "init_sha256": self.student.init_sha256,
        }
        _save_checkpoint(self.out / "last.pt", state)
        if score > self.best:
            self.best = score
            _save_checkpoint(
                self.out / "best.pt",
                {"model": self.bundle.student.state_dict(), "epoch": row["epoch"], "score": score},
            )
        _write_log(self.out, self.history)
        log.info("epoch %d: %s", row["epoch"], row)
        tqdm.write(f"epoch {row['epoch']}: " + ", ".join(f"{k}={v}" for k, v in row.items()))


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


def _write_log(out: Path, history: list[dict[str, Any]]) -> None:
    write_json_atomic(out / "history.json", history)
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    with atomic_write(out / "log.csv", "w") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def _data_list(data: str | tuple[str, ...]) -> str:
    return data if isinstance(data, str) else " + ".join(data)
