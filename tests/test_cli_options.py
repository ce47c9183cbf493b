"""The CLI is generated from the option dataclasses of :mod:`lrface.cli.options`: one
source of each option's default and help text; bad values are refused as documented in
:mod:`lrface.cli.main` (exit status 2, one line).  Nothing here loads a model."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import pytest

from lrface.argconfig import add_arguments, arg, flag_of, from_namespace, nested, option_fields
from lrface.cli.main import COMMANDS, build_parser, main
from lrface.options import CropFlags

#: The required arguments of each command (nothing else given: every option at its default).
MINIMAL = {
    "verify": ["a.jpg", "b.jpg"],
    "detect": ["a.jpg"],
    "embed": ["a.jpg", "--out", "o.npz"],
    "models": [],
    "benchmark": ["--protocol", "lfw", "--data", "lfw/"],
    "distill": ["--data", "faces/", "--out", "runs/x"],
    "export": ["--model", "lrface-mbf", "--onnx", "m.onnx"],
    "adapt": ["--data", "cam/", "--out", "runs/cam1"],
    "gallery": ["build", "root/", "--out", "g.npz"],
    "identify": ["p.jpg", "--gallery", "g.npz"],
    "watch": ["clip.mp4", "--gallery", "g.npz", "--out", "t.json"],
    "serve": [],
}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _configs(options: Any) -> list[Any]:
    """``options`` and the configs nested in it (benchmark, distill)."""
    inner = [
        getattr(options, f.name)
        for f in dataclasses.fields(options)
        if "nested_build" in f.metadata
    ]
    return [options, *inner]


def test_every_command_is_generated_from_a_frozen_dataclass():
    assert set(COMMANDS) == set(MINIMAL) == set(_subparsers(build_parser()))
    for name, (_, options, _, _) in COMMANDS.items():
        assert dataclasses.is_dataclass(options), name
        assert options.__dataclass_params__.frozen, name
        assert all(f.metadata["help"] for f in option_fields(options)), name


@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_parser_defaults_are_the_dataclass_defaults(command):
    """Parsed with only its required arguments, each command's config holds every
    option field's default; argparse's own default and help are the field's."""
    parser = build_parser()
    ns = parser.parse_args([command, *MINIMAL[command]])
    options = from_namespace(COMMANDS[command][1], ns)
    sub = _subparsers(parser)[command]
    actions = {a.dest: a for a in sub._actions}
    checked = 0
    for config in _configs(options):
        for f in option_fields(type(config)):
            if f.default is dataclasses.MISSING:
                continue
            assert getattr(config, f.name) == f.default, (command, flag_of(f))
            action = actions[f.name]
            assert action.help == f.metadata["help"], (command, flag_of(f))
            if f.metadata.get("parse") is None and command != "distill":  # distill: None
                assert action.default == f.default, (command, flag_of(f))
            checked += 1
    assert checked >= 3, command


def test_shared_options_are_defined_once():
    """The crop options of verify, embed, gallery and identify are CropFlags' fields."""
    parser = _subparsers(build_parser())
    crop = {f.name: f for f in option_fields(CropFlags)}
    for command in ("verify", "embed", "gallery", "identify"):
        actions = {a.dest: a for a in parser[command]._actions}
        for name, f in crop.items():
            assert actions[name].help is f.metadata["help"], (command, name)
            assert actions[name].option_strings == [flag_of(f)]


def argparse_error(capsys, *argv: str) -> str:
    """A command argparse refuses: exit status 2, its usage line and one error line."""
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("usage: lrface ")
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["verify", "a.jpg", "b.jpg", "--threshold", "2"],
            "lrface verify: error: argument --threshold: 2 is not a cosine threshold in [-1, 1]",
        ),
        (
            ["identify", "p.jpg", "--gallery", "g.npz", "--top-k", "0"],
            "lrface identify: error: argument --top-k: 0 is below 1",
        ),
        (
            ["embed", "a.jpg", "--out", "o.npz", "--workers", "two"],
            "lrface embed: error: argument --workers: 'two' is not an integer",
        ),
        (
            ["gallery", "build", "r/", "--out", "g.npz", "--index", "hnsw"],
            "lrface gallery: error: argument --index: invalid choice: 'hnsw'",
        ),
        (["detect", "a.jpg", "--det-thresh", "high"], "argument --det-thresh: invalid float"),
        (["export", "--model", "lrface-mbf"], "the following arguments are required: --onnx"),
        (
            ["watch", "c.mp4", "--gallery", "g.npz", "--out", "t.json", "--every", "0"],
            "lrface watch: error: argument --every: 0 is below 1",
        ),
    ],
)
def test_bad_value_is_argparse_error(capsys, argv, line):
    assert line in argparse_error(capsys, *argv)


def test_bad_parsed_value_is_one_error_line(capsys):
    """Options converted after parsing (``parse=``) fail in :func:`lrface.cli.main.main`: exit
    status 2, one ``error:`` line, before any work."""
    rc = main([*("benchmark", "--protocol", "lfw", "--data", "lfw/", "--sizes", "8,2")])
    err = capsys.readouterr().err
    assert rc == 2 and err == "error: --sizes: 2 is outside 4..1024 pixels\n"


# ---------------------------------------------------------------- argconfig additions


@dataclasses.dataclass(frozen=True)
class _Base:
    """Shared things."""

    loud: bool = dataclasses.field(default=False, metadata=arg("talk", short="-l"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Demo(_Base):
    mode: str = dataclasses.field(
        default="a", metadata=arg("mode", positional=True, nargs="?", choices=("a", "b"))
    )
    paths: tuple[str, ...] = dataclasses.field(
        metadata=arg("inputs", positional=True, nargs="+", parse=tuple)
    )
    count: int = dataclasses.field(default=1, metadata=arg("count", type=int))
    extra: tuple[str, ...] = dataclasses.field(
        default=(), metadata=nested(lambda p: p.add_argument("--x"), lambda ns: (ns.x,))
    )


def test_argconfig_positionals_groups_short_flags_and_nested():
    parser = argparse.ArgumentParser(prog="demo")
    add_arguments(parser, _Demo)
    demo = from_namespace(_Demo, parser.parse_args(["b", "p", "q", "-l", "--x", "y"]))
    assert demo == _Demo(mode="b", paths=("p", "q"), count=1, loud=True, extra=("y",))
    assert from_namespace(_Demo, parser.parse_args(["p"])) == _Demo(paths=("p",), extra=(None,))
    titles = [g.title for g in parser._action_groups if g._group_actions]
    assert titles[-1] == "Shared things"  # a base's fields: a group titled by its docstring
    with pytest.raises(TypeError, match="needs parse="):
        bad = dataclasses.make_dataclass(
            "Bad", [("xs", tuple, dataclasses.field(metadata=arg("x", nargs="*")))]
        )
        add_arguments(argparse.ArgumentParser(), bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["distill", "--data", "tests/data", "--out", "{tmp}/run"],
        ["adapt", "--data", "tests/data", "--out", "{tmp}/cam"],
        ["export", "--model", "lrface-mbf", "--onnx", "{tmp}/m.onnx"],
    ],
)
def test_training_commands_without_torch_say_so_in_one_line(argv, tmp_path, monkeypatch, capsys):
    """An inference-only install (no torch): distill, adapt and export stop before any work
    with one line naming the extra to install, exit 2, no traceback, nothing written."""
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # what a machine without torch looks like
    rc = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"lrface {argv[0]} needs torch" in err[0] and "lrface[train]" in err[0]
    assert not any(tmp_path.iterdir())
