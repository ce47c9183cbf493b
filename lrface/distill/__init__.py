"""Distillation of low-resolution students: ``lrface distill``, :func:`train.distill`.

One module per job: ``config`` (:class:`~lrface.distill.config.DistillConfig`, the CLI
options and recipe files made from it), ``data`` and ``dataset`` (faces, teacher targets,
degraded views), ``views`` (detector-box views), ``students`` (the starting student),
``losses`` and ``objective`` (the loss terms and their weights and schedules), ``online``
(online teacher targets), ``validate``, ``card`` and ``train`` (the loop).  This package
module stays free of heavy imports, so the CLI reads :data:`LOSS_TERMS` without torch.
"""

from __future__ import annotations

LOSS_TERMS = ("kd", "crcd", "rkd", "nce", "arc")  # the terms DistillConfig.losses may name
