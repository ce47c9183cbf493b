"""lrface: low-resolution face recognition by cross-resolution distillation.

Quick start::

    import lrface
    res = lrface.verify("a.jpg", "b.jpg")          # {"same": ..., "similarity": ...}
    emb = lrface.load_embedder("lrface-mbf")        # student for 8-32 px faces
    vecs = emb.embed_crops(list_of_bgr_crops)       # (N, 128) float32, L2-normalised
    report = lrface.watch_frames(frames, "watchlist.npz")  # tracks of faces, identified
"""

__version__ = "0.1.0"

from lrface.api import Verification, choose_model, detect, embed, verify
from lrface.errors import LrfaceError
from lrface.models.loader import load_embedder
from lrface.search.templates import build_template, fuse_template
from lrface.video.watch import WatchSettings, watch_frames

__all__ = [
    "LrfaceError",
    "Verification",
    "WatchSettings",
    "__version__",
    "build_template",
    "choose_model",
    "detect",
    "embed",
    "fuse_template",
    "load_embedder",
    "verify",
    "watch_frames",
]
