"""``lrface models fetch NAME``: download a registry model into ``$LRFACE_HOME/models``."""

from __future__ import annotations

from pathlib import Path

from lrface.errors import ModelFileError
from lrface.io.fileio import check_writable
from lrface.models import registry
from lrface.models.download import download_file, unpack_zip

_DIRECT = (".onnx", ".zip", ".pt", ".pth")


def fetch_model(
    name: str, dest_dir: str | Path | None = None, progress: bool = True, url: str | None = None
) -> Path:
    """Download model ``name`` (sha256-checked, atomic, resumable) and return its path.

    A model that is already installed (shipped in ``weights/`` or found in the model
    directories) is verified and returned without a download.  Files inside an
    insightface pack are fetched by downloading the pack zip -- verified against the
    registry's sha256 of the zip when it comes from the registry URL -- and unpacking it
    in insightface's layout (``<dest>/<pack>/<file>``); the member lrface uses is
    verified against its own sha256 either way.  ``url`` overrides the registry URL
    (mirrors, tests).
    """
    spec = registry.get_spec(name)
    dest = Path(dest_dir) if dest_dir else registry.lrface_home() / "models"
    existing = registry.find(spec)
    if existing is not None and dest_dir is None:
        registry.verify_sha256(existing, spec.sha256, spec.name, spec.url, spec.card_path)
        return existing
    src = url or spec.url
    if not src or not src.lower().endswith(_DIRECT):
        where = (
            f"restore it beside its card {spec.card_path} (git checkout weights/)"
            if spec.card_path
            else f"see `lrface models list` for its origin ({spec.description})"
        )
        raise ModelFileError(f"{spec.file}: {name} has no direct download URL; {where}")
    check_writable(dest, "dir", "model directory ($LRFACE_HOME/models)")  # before downloading
    if src.lower().endswith(".zip"):
        pack = spec.pack or Path(src).stem
        zip_sha = spec.pack_sha256 if src == spec.url else None
        zpath = download_file(src, dest / f"{pack}.zip", zip_sha, progress=progress)
        unpack_zip(zpath, dest)
        names = [spec.file] + ([spec.pack_file] if spec.pack_file else [])
        found = [dest / pack / n for n in names if (dest / pack / n).is_file()]
        if not found:
            raise ModelFileError(f"{zpath}: pack does not contain {' or '.join(names)}")
        registry.verify_sha256(found[0], spec.sha256, spec.name, src)
        zpath.unlink(missing_ok=True)
        return found[0]
    return download_file(src, dest / spec.file, spec.sha256, progress=progress)
