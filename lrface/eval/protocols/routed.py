"""``lrface benchmark --model auto``: the default per-face routing as one evaluated "model".

What a user gets from ``lrface embed --no-detect`` / ``verify`` / ``identify`` with a pre-cut
crop and no ``--model``: the crop is read by the default crop mode
(:func:`lrface.faces.pipeline.given_view`: aligned by the landmarks found inside it, a small
face read both ways, else the box path) and each face is embedded by the model
:class:`lrface.faces.routing.ModelRouter` chooses for it.  Only ``--probe-crop given``
probes are routed this way (the protocol passes the landmarks it found and cached for each
probe, :func:`lrface.eval.protocols.conditions.given_landmarks`); the HR side is the
teacher (``--hr-model auto``: the aligned student's card names it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from lrface.errors import LrfaceError
from lrface.faces.pipeline import given_view
from lrface.faces.routing import LR_STUDENT, ModelRouter
from lrface.models.loader import load_embedder

__all__ = ["ROUTED", "RoutedModel"]

#: The ``--model`` name of the default routing.
ROUTED = "auto"
#: Given probes embedded per call (each model's batch is a part of it).
_CHUNK = 256


class RoutedModel:
    """The default routing of pre-cut crops, for the LFW protocol's ``--probe-crop given``.

    ``spec``, ``input_size``, ``embedding_size``, ``threshold``: the aligned student's (its
    card names the teacher for ``--hr-model auto``).  ``flip``: mirrored-crop fusion of
    every model used (the benchmark's ``--no-flip``).  :meth:`embed_crops` is refused: only
    :meth:`embed_given` embeds.
    """

    name = ROUTED
    batch_size = 64

    def __init__(self, flip: bool = True, precision: str | None = None) -> None:
        self.flip = flip
        self.precision = precision
        card = load_embedder(LR_STUDENT, flip=flip, precision=precision)
        self.spec = card.spec
        self.input_size = int(card.input_size)
        self.embedding_size = int(card.embedding_size)
        self.threshold = card.threshold
        self._router = ModelRouter(precision=precision, flip=flip)

    @property
    def sha256(self) -> str | None:
        """The aligned student's sha256 (the routing has no weights of its own)."""
        return self.spec.sha256

    def embed_crops(
        self, crops: Sequence[np.ndarray] | np.ndarray, flip: bool | None = None
    ) -> np.ndarray:
        """Refused: the routing needs each probe's landmarks (:meth:`embed_given`)."""
        raise LrfaceError(
            "--model auto (the default routing of pre-cut crops) is evaluated by --protocol lfw "
            "with --probe-crop given and --mode hr-lr only"
        )

    def embed_given(
        self, probes: Sequence[np.ndarray], landmarks: np.ndarray, found: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]:
        """``(float32 (N, D) L2-normalised embeddings, share of probes per path)`` of given
        probes (uint8 BGR, any size) with the landmarks found inside them (float32 (N, 5,
        2); ``found`` bool (N,)), each read by :func:`given_view` and embedded by the model
        the router chooses.  Path keys: ``"<crop kind> -> <model>"``."""
        out, paths = [], Counter[str]()
        for a in range(0, len(probes), _CHUNK):
            views = [
                given_view(probes[k], landmarks[k] if found[k] else None, self.input_size)
                for k in range(a, min(a + _CHUNK, len(probes)))
            ]
            emb, names = self._router.embed(
                [v[0] for v in views], [v[1] for v in views], [v[2] for v in views],
                [v[3] for v in views],
            )  # fmt: skip
            out.append(emb)
            paths.update(f"{v[2]} -> {n}" for v, n in zip(views, names))
        n = max(1, len(probes))
        share = {k: round(c / n, 4) for k, c in sorted(paths.items())}
        if not out:
            return np.zeros((0, self.embedding_size), np.float32), share
        return np.concatenate(out).astype(np.float32), share
