"""``lrface models fetch NAME``: download a registry model into ``$LRFACE_HOME/models``."""

from __future__ import annotations

from pathlib import Path

from .download import download_file, unpack_zip
from .errors import ModelFileError
from .models import registry

_DIRECT = (".onnx", ".zip", ".pt", ".pth")


def fetch_model(
    name: str, dest_dir: str | Path | None = None, progress: bool = True, url: str | None = None
) -> Path:
    """Download model ``name`` (sha256-checked, atomic, resumable) and return its path.

    Files inside an insightface pack are fetched by downloading the pack zip and
    unpacking it in insightface's layout (``<dest>/<pack>/<file>``).  ``url`` overrides
    the registry URL (mirrors, tests).
    """
    spec = registry.get_spec(name)
    dest = Path(dest_dir) if dest_dir else registry.lrface_home() / "models"
    existing = registry.find(spec)
    if existing is not None and dest_dir is None:
        registry.verify_sha256(existing, spec.sha256, spec.name, spec.url)
        return existing
    src = url or spec.url
    if not src or not src.lower().endswith(_DIRECT):
        raise ModelFileError(
            f"{spec.file}: {name} has no direct download URL; get it from {spec.url} and put "
            f"it in {dest}"
        )
    dest.mkdir(parents=True, exist_ok=True)
    if src.lower().endswith(".zip"):
        pack = spec.pack or Path(src).stem
        zpath = download_file(src, dest / f"{pack}.zip", None, progress=progress)
        unpack_zip(zpath, dest)
        path = dest / pack / spec.file
        if not path.is_file():
            raise ModelFileError(f"{zpath}: pack does not contain {spec.file}")
        registry.verify_sha256(path, spec.sha256, spec.name, src)
        zpath.unlink(missing_ok=True)
        return path
    return download_file(src, dest / spec.file, spec.sha256, progress=progress)
