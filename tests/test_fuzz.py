"""Short, seeded fuzz pass over the loaders of untrusted files (issue 17) and the
surfaces of issue 29: model cards against the files they name, API arguments, output paths.

Hypothesis drives the mutators of ``benchmarks/fuzz.py`` (its choices shrink to a minimal
failing input) over real small images, galleries, model cards (alone, and with the shipped
model files), calls of verify/detect/embed and output paths.  Property: each input loads
(or answers, or writes) or raises :class:`lrface.errors.LrfaceError` with a one-line
message (output paths: or an ``OSError`` naming the path) -- any other exception is a
crash; an input slower than the deadline (2 s; 10 s where a model loads) is a hang.  The
long run (>= 100,000 inputs per target, watchdog, peak RSS) is ``python benchmarks/fuzz.py``.

Also here: the memory guard -- the "bombs" (inputs of at most 10 MB that decode to 49 MP or
claim far more) keep a fresh process below 500 MB of peak RSS.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from benchmarks import fuzz
from lrface.errors import LrfaceError

REPO = Path(__file__).resolve().parents[1]
# hypothesis caches source constants in ./.hypothesis; keep the work tree clean
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "lrface-hypothesis"))
FUZZ_SETTINGS = settings(
    derandomize=True,  # the same inputs on every run (CI)
    database=None,
    deadline=2000,  # ms: slower is a hang
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


class HypothesisChooser:
    """:class:`benchmarks.fuzz.Chooser` backed by hypothesis draws (shrinkable)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def binary(self, n: int) -> bytes:
        return self.data.draw(st.binary(min_size=n, max_size=n))


@functools.cache
def _seeds(target: str) -> dict[str, bytes]:
    return fuzz.seeds_for(target, Path(tempfile.mkdtemp(prefix="lrface-fuzz-seeds-")))


@functools.cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="lrface-fuzz-"))


def _check(target: str, data: bytes) -> None:
    """Load ``data``; an LrfaceError must be one line, anything else propagates (crash)."""
    try:
        fuzz.RUNNERS[target](data, _workdir())
    except LrfaceError as exc:
        assert "\n" not in str(exc), str(exc)


def test_seeds_are_real_and_load():
    """The corpora hold every format and each unmutated seed loads."""
    images = _seeds("image")
    kinds = {name.split("_")[0] for name in images}
    assert {"png", "jpeg", "webp", "tiff", "gif", "bmp", "ppm"} <= kinds
    for target in fuzz.TARGETS:
        for name, data in _seeds(target).items():
            assert fuzz.RUNNERS[target](data, _workdir()) == "ok", (target, name)


@settings(FUZZ_SETTINGS, max_examples=1200)
@given(st.data())
def test_fuzz_read_image(data):
    mutate = functools.partial(fuzz.mutate_image, near_limit=False)
    _check("image", mutate(HypothesisChooser(data), _seeds("image")))


@settings(FUZZ_SETTINGS, max_examples=500)
@given(st.data())
def test_fuzz_gallery_load(data):
    _check("gallery", fuzz.mutate_npz(HypothesisChooser(data), _seeds("gallery")))


@settings(FUZZ_SETTINGS, max_examples=600)
@given(st.data())
def test_fuzz_model_card(data):
    _check("card", fuzz.mutate_card(HypothesisChooser(data), _seeds("card")))


# The new surfaces of issue 29: cards against the model files they name, the arguments of
# verify/detect/embed, output paths.  A model load or a verify with detection takes ~0.1-1 s
# (several on a busy machine): their deadline is 10 s.


@settings(FUZZ_SETTINGS, max_examples=40, deadline=10_000)
@given(st.data())
def test_fuzz_model_card_against_its_file(data):
    _check("model", fuzz.mutate_model_card(HypothesisChooser(data), _seeds("model")))


@settings(FUZZ_SETTINGS, max_examples=60, deadline=10_000)
@given(st.data())
def test_fuzz_api_arguments(data):
    _check("api", fuzz.mutate_api_call(HypothesisChooser(data), _seeds("api")))


@settings(FUZZ_SETTINGS, max_examples=200)
@given(st.data())
def test_fuzz_output_paths(data):
    _check("outpath", fuzz.mutate_outpath(HypothesisChooser(data), _seeds("outpath")))


_RSS_SCRIPT = """
import json, sys, time
from pathlib import Path
from lrface.errors import LrfaceError
from lrface.io.images import read_image
rows = []
for path in sorted(Path(sys.argv[1]).glob("*.bin")):
    t = time.perf_counter()
    try:
        img = read_image(path.read_bytes())
        result = "decoded %dx%d" % (img.shape[1], img.shape[0])
        del img
    except LrfaceError as exc:
        result = "refused"
    rows.append((path.stem, result, round(time.perf_counter() - t, 2)))
hwm = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM")]
print(json.dumps({"rows": rows, "peak_rss_mb": int(hwm[0].split()[1]) / 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_bombs_keep_peak_rss_below_500mb(tmp_path):
    """Every bomb (<= 10 MB each) read in one fresh process: peak RSS < 500 MB, and the ones
    under the pixel limit decode while the others are refused."""
    bombs = fuzz.make_bombs()
    for name, data in bombs.items():
        assert len(data) <= 10 * 2**20
        (tmp_path / f"{name}.bin").write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        check=True,
    )
    assert out.stderr == ""  # no warning, no libpng/libjpeg noise
    report = json.loads(out.stdout)
    results = {name: result for name, result, _ in report["rows"]}
    assert results["png_rgba16_49mp"] == "decoded 7000x7000"
    assert results["tiff_rgba16_49mp_orient6"] == "decoded 7000x7000"
    assert results["png_claims_50000sq"] == "refused"
    assert results["png_1bit_20000sq"] == "refused"
    assert report["peak_rss_mb"] < fuzz.RSS_LIMIT_MB, report


def test_fuzz_script_runs(tmp_path):
    """benchmarks/fuzz.py end to end (worker, watchdog, JSON summary) on a few inputs."""
    out = subprocess.run(
        [sys.executable, "benchmarks/fuzz.py", "--target", "all", "--n", "20", "--no-bombs",
         "--out", str(tmp_path), "--json", str(tmp_path / "summary.json")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    for target in fuzz.TARGETS:
        row = summary["targets"][target]
        assert row["inputs"] == 20 and row["ok"] + row["refused"] == 20, row
        assert row["crashes"] == 0 and row["hangs"] == 0, row
        assert 0 < row["peak_rss_mb"] < fuzz.RSS_LIMIT_MB
