"""lrface: low-resolution face recognition by cross-resolution distillation.

Quick start::

    import lrface
    res = lrface.verify("a.jpg", "b.jpg")          # {"same": ..., "similarity": ...}
    emb = lrface.load_embedder("lrface-mbf")        # student for 8-32 px faces
    vecs = emb.embed_crops(list_of_bgr_crops)       # (N, 128) float32, L2-normalised
"""

__version__ = "0.1.0"

from .api import Verification, choose_model, detect, embed, verify
from .errors import LrfaceError
from .models.loader import load_embedder

__all__ = [
    "LrfaceError",
    "Verification",
    "__version__",
    "choose_model",
    "detect",
    "embed",
    "load_embedder",
    "verify",
]
