"""onnxruntime execution-provider selection (CUDA when usable, else CPU), logged once."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("lrface")

_PREFERRED = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: list[str] | None = None) -> list[str]:
    """Providers to use, best first.

    ``requested`` (or ``$LRFACE_PROVIDERS``, comma separated) overrides the automatic
    choice; otherwise CUDA is used when ``onnxruntime-gpu`` is installed and a GPU is
    visible, then CPU.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    env = os.environ.get("LRFACE_PROVIDERS")
    if requested is None and env:
        requested = [p.strip() for p in env.split(",") if p.strip()]
    if requested:
        chosen = [p for p in requested if p in available]
        if not chosen:
            chosen = ["CPUExecutionProvider"]
    else:
        chosen = [p for p in _PREFERRED if p in available] or ["CPUExecutionProvider"]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


#: onnxruntime's CPU memory arena: kept (without it every call frees and re-allocates its
#: activations: measured 1.2-1.5x slower and no less memory on 1,000 crops).
CPU_MEM_ARENA = True
#: onnxruntime's memory pattern (one planned block per input shape, kept for the
#: session's life): off -- with batches of varying size each shape adds a block
#: (measured: 614 vs 459 MB peak embedding 1,000 crops with lrface-mbf, speed within
#: the noise of a shared 2-core machine).
MEM_PATTERN = False


def make_session(path: str | os.PathLike[str] | bytes, providers: list[str] | None = None):
    """An ``onnxruntime.InferenceSession`` on the chosen providers; logs which was applied.

    Session options: all graph optimisations (onnxruntime's default; its NCHWc layout is
    what makes the CPU fast), the CPU memory arena on and the memory pattern off
    (:data:`CPU_MEM_ARENA`, :data:`MEM_PATTERN`), ``$LRFACE_THREADS`` intra-op threads
    (default: one per physical core), and intra-op threads that block instead of
    spin-waiting between operators (``$LRFACE_SPIN=1`` restores spinning): on a CPU shared
    with other work (a training job, several workers) spinning threads steal cycles from
    each other and from the rest of the machine -- measured on 2 busy cores, ``lrface-tiny-16`` ran
    ~1.35x faster at batch 256 without it, the teacher and ``verify`` unchanged (not
    measured on an idle machine, where the cost is one thread wake-up per operator).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # 4 = fatal only: a failing node's error comes back as the exception (which lrface
    # turns into its one-line message); at 3 onnxruntime also prints it on stderr
    opts.log_severity_level = 4
    opts.enable_cpu_mem_arena = CPU_MEM_ARENA
    opts.enable_mem_pattern = MEM_PATTERN
    threads = os.environ.get("LRFACE_THREADS")
    if threads:
        opts.intra_op_num_threads = int(threads)
    spin = "1" if os.environ.get("LRFACE_SPIN", "").strip() == "1" else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    model = path if isinstance(path, bytes) else str(path)
    sess = ort.InferenceSession(model, sess_options=opts, providers=choose_providers(providers))
    name = "<in-memory model>" if isinstance(path, bytes) else os.path.basename(str(path))
    log.info("onnxruntime: %s runs on %s", name, sess.get_providers()[0])
    return sess
