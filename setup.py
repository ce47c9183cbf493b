"""Build hook for the one thing setup.cfg cannot say: the shipped models go into every install.

The repository keeps its models in the top-level ``weights/`` (teacher, students as ONNX
and torch ``.pt``, YuNet, each with its JSON card).  Mapping that directory to the package
``lrface.weights`` makes it package data, so a wheel or ``pip install .`` installs it as
``site-packages/lrface/weights/``; :data:`lrface.models.registry.PACKAGE_WEIGHTS` looks
there first and falls back to the clone's ``weights/`` (editable installs, ``PYTHONPATH``).
The operator page of ``lrface serve`` (``lrface/serve/static/``) is package data too.
Everything else (metadata, dependencies, entry points) is in setup.cfg.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["lrface", "lrface.*"]), "lrface.weights"],
    package_dir={"lrface.weights": "weights"},
    package_data={
        "lrface.weights": ["*.onnx", "*.json", "*.pt", "*.npz"],
        "lrface.serve": ["static/*"],  # the operator page of `lrface serve`
    },
)
