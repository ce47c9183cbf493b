"""Command-line options generated from a config dataclass: one source of defaults and help.

A field becomes an option when its metadata comes from :func:`arg`::

    @dataclasses.dataclass(frozen=True)
    class Config:
        data: str = field(metadata=arg("dataset root", metavar="PATH"))  # required
        sizes: tuple[int, ...] | None = field(
            default=None, metadata=arg("LR sizes", metavar="S[,S...]", parse=parse_sizes)
        )
        flip: bool = field(default=True, metadata=arg("no flip fusion", flag="--no-flip"))

    add_arguments(parser, Config)                   # --data, --sizes, --no-flip
    config = from_namespace(Config, parser.parse_args())

Rules: the flag is ``--field-name`` unless ``flag`` says otherwise; a field without a
default is a required option; a ``bool`` field is a switch (``store_true`` when its default
is False, ``store_false`` -- a ``--no-...`` flag -- when it is True); an ``int``/``float``
field (or optional one) is converted by argparse; a field with ``parse`` keeps the option's
text in the namespace and :func:`from_namespace` converts it with ``parse(text)`` (so a bad
value raises the parser's :class:`~lrface.errors.LrfaceError`, one line), the field's
default standing when the option is not given.  Fields without :func:`arg` metadata are
not options (e.g. values only a caller sets).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["add_arguments", "arg", "flag_of", "from_namespace", "option_fields"]


def arg(
    help: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    choices: Sequence[str] | None = None,
    parse: Callable[[str], Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Field metadata that makes a dataclass field a command-line option (module docstring).

    ``extra`` entries are kept in the metadata for the config's own use.
    """
    return {
        "help": help,
        "flag": flag,
        "metavar": metavar,
        "choices": choices,
        "parse": parse,
        **extra,
    }


def option_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of dataclass ``cls`` that are command-line options, in order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def flag_of(f: dataclasses.Field[Any]) -> str:
    """The option string of field ``f`` (``--field-name`` unless its metadata names one)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _scalar_type(hint: Any) -> type | None:
    """``int`` for ``int`` or ``int | None`` (likewise float/str/bool), else None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if len(args) == 1 else hint
    return base if base in (int, float, str, bool) else None


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one option per :func:`option_fields` field of ``cls`` to ``parser``."""
    hints = typing.get_type_hints(cls)
    for f in option_fields(cls):
        md = f.metadata
        default = _default(f)
        kind = _scalar_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "help": md["help"]}
        if kind is bool:
            kw["action"] = "store_false" if default is True else "store_true"
        else:
            if default is dataclasses.MISSING:
                kw["required"] = True
            else:
                kw["default"] = None if md.get("parse") else default
            if md.get("parse") is None and kind in (int, float):
                kw["type"] = kind
            elif md.get("parse") is None and kind is None:
                raise TypeError(f"{cls.__name__}.{f.name}: a non-scalar option needs parse=")
            for key in ("metavar", "choices"):
                if md.get(key) is not None:
                    kw[key] = md[key]
        parser.add_argument(flag_of(f), **kw)


def from_namespace(cls: type[T], namespace: argparse.Namespace, **values: Any) -> T:
    """An instance of ``cls`` from a namespace parsed with :func:`add_arguments` (options
    with ``parse`` converted; options not given keep the field default).  ``values`` set
    fields directly (non-option fields, or overrides)."""
    kwargs: dict[str, Any] = {}
    for f in option_fields(cls):
        value = getattr(namespace, f.name)
        parse = f.metadata.get("parse")
        if parse is not None:
            if value is None:
                continue
            value = parse(value)
        kwargs[f.name] = value
    kwargs.update(values)
    return cls(**kwargs)
