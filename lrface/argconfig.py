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
default standing when the option is not given; ``repeat=True`` makes the option
repeatable (``parse`` gets the list of texts).  Fields without :func:`arg` metadata are
not options (e.g. values only a caller sets).

More of argparse, where a command needs it: ``positional=True`` makes the field a
positional argument named after it; ``nargs`` (``"?"``, ``"*"``, ``"+"``) as in argparse
(with ``*``/``+`` ``parse`` gets the list of texts, e.g. ``parse=tuple``); ``type`` is an
argparse type, called at parse time, so a bad value is argparse's usage line and
``error: argument --x: ...`` with exit status 2 (instead of a plain ``int``/``float``);
``short`` adds a one-letter alias (``short="-v"``).  A field whose value is a whole
config with options of its own (added by another function) takes :func:`nested`
metadata.  Fields inherited from a dataclass base go in an argument group of the help
titled by the first line of that base's docstring, so shared option groups are defined
once, as mixins (e.g. :class:`lrface.options.CropFlags`).

Config files: ``add_arguments(parser, cls, defaults=False)`` leaves every option not given
as None, so :func:`given_options` returns what the command line set, to be laid over the
values of a TOML file read by :func:`load_config` (keys: the field names)::

    values = load_config(Config, "recipe.toml") | given_options(Config, namespace)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lrface.errors import LrfaceError

T = TypeVar("T")

__all__ = [
    "add_arguments",
    "arg",
    "flag_of",
    "from_namespace",
    "given_options",
    "load_config",
    "nested",
    "option_fields",
]


def arg(
    help: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    choices: Sequence[str] | None = None,
    parse: Callable[[Any], Any] | None = None,
    repeat: bool = False,
    positional: bool = False,
    nargs: str | None = None,
    type: Callable[[str], Any] | None = None,
    short: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Field metadata that makes a dataclass field a command-line option (module docstring).

    ``repeat``: the option may be given several times; ``parse`` (required then) gets the
    list of its texts.  ``extra`` entries are kept in the metadata for the config's own use.
    """
    return {
        "help": help,
        "flag": flag,
        "metavar": metavar,
        "choices": choices,
        "parse": parse,
        "repeat": repeat,
        "positional": positional,
        "nargs": nargs,
        "type": type,
        "short": short,
        **extra,
    }


def nested(
    add: Callable[[argparse.ArgumentParser], None], build: Callable[[argparse.Namespace], Any]
) -> dict[str, Any]:
    """Metadata of a field that holds a whole config: :func:`add_arguments` calls
    ``add(parser)`` (at the field's place) to add its options, :func:`from_namespace`
    sets the field to ``build(namespace)``."""
    return {"nested_add": add, "nested_build": build}


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


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, defaults: bool = True) -> None:
    """Add one option per :func:`option_fields` field of ``cls`` to ``parser``.

    ``defaults=False`` (options that may also come from a config file): argparse requires
    none and fills in no default, so an option not given is None in the namespace and
    :func:`given_options` leaves it out; the caller checks the required fields.
    """
    hints = typing.get_type_hints(cls)
    groups = {base: parser.add_argument_group(_title(base)) for base in _bases(cls)}
    owner = {f.name: next((b for b in groups if f.name in _field_names(b)), None)
             for f in dataclasses.fields(cls)}  # fmt: skip
    order = [None, *groups]  # the class's own fields first, then each base's group
    for f in sorted(dataclasses.fields(cls), key=lambda f: order.index(owner[f.name])):
        md = f.metadata
        if "nested_add" in md:
            md["nested_add"](parser)
            continue
        if "help" not in md:
            continue
        group = owner[f.name]
        target = parser if group is None else groups[group]
        kw = _argument_kwargs(cls, f, hints[f.name], defaults)
        target.add_argument(*_option_names(f), **kw)


def _argument_kwargs(
    cls: type, f: dataclasses.Field[Any], hint: Any, defaults: bool
) -> dict[str, Any]:
    """The ``add_argument`` keywords of option field ``f`` of ``cls`` (type hint ``hint``):
    a switch for a ``bool``, else :func:`_value_kwargs`; ``defaults`` as in
    :func:`add_arguments`.  Raises TypeError for a list-valued option without ``parse``."""
    md = f.metadata
    default = _default(f)
    kind = _scalar_type(hint)
    positional = md.get("positional", False)
    kw: dict[str, Any] = {"help": md["help"]} | ({} if positional else {"dest": f.name})
    if (md.get("repeat") or md.get("nargs") in ("*", "+")) and md.get("parse") is None:
        raise TypeError(f"{cls.__name__}.{f.name}: a list-valued option needs parse=")
    if kind is bool:
        kw["action"] = "store_false" if default is True else "store_true"
        if not defaults:
            kw["default"] = None
        return kw
    return kw | _value_kwargs(cls, f, kind, default, defaults)


def _value_kwargs(
    cls: type, f: dataclasses.Field[Any], kind: type | None, default: Any, defaults: bool
) -> dict[str, Any]:
    """The ``add_argument`` keywords of option field ``f`` of ``cls`` that takes a value
    (scalar type ``kind``, field default ``default``): required/default, append, type,
    metavar, choices, nargs.  Raises TypeError for a non-scalar option without ``parse``."""
    md = f.metadata
    kw: dict[str, Any] = {}
    if default is dataclasses.MISSING:
        if not md.get("positional", False):
            kw["required"] = defaults
    else:
        kw["default"] = None if md.get("parse") or not defaults else default
    if md.get("repeat"):
        kw["action"] = "append"
    if md.get("type") is not None:
        kw["type"] = md["type"]
    elif md.get("parse") is None and kind in (int, float):
        kw["type"] = kind
    elif md.get("parse") is None and kind is None:
        raise TypeError(f"{cls.__name__}.{f.name}: a non-scalar option needs parse=")
    for key in ("metavar", "choices", "nargs"):
        if md.get(key) is not None:
            kw[key] = md[key]
    return kw


def _option_names(f: dataclasses.Field[Any]) -> list[str]:
    """The names of option field ``f`` for ``add_argument``: the field name for a
    positional, else its flag, after its one-letter alias when it has one."""
    md = f.metadata
    if md.get("positional", False):
        return [f.name]
    return [md["short"], flag_of(f)] if md.get("short") else [flag_of(f)]


def _nested_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if "nested_build" in f.metadata]


def _bases(cls: type) -> list[type]:
    """The dataclass bases of ``cls`` whose fields are options (each a help group)."""
    return [b for b in cls.__bases__ if dataclasses.is_dataclass(b)]


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _title(base: type) -> str:
    """An argument group's title: the first line of ``base``'s docstring, less its period."""
    return (base.__doc__ or base.__name__).strip().splitlines()[0].rstrip(".")


def given_options(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """``{field: value}`` for the options of ``cls`` that have a value in ``namespace``
    (parsed with :func:`add_arguments`), options with ``parse`` converted.  A None value
    means "not given" and is left out (with ``defaults=True`` the other options carry
    their defaults)."""
    values: dict[str, Any] = {}
    for f in option_fields(cls):
        value = getattr(namespace, f.name)
        if value is None:
            continue
        parse = f.metadata.get("parse")
        values[f.name] = value if parse is None else parse(value)
    return values


def from_namespace(cls: type[T], namespace: argparse.Namespace, **values: Any) -> T:
    """An instance of ``cls`` from a namespace parsed with :func:`add_arguments` (options
    with ``parse`` converted; options not given keep the field default).  ``values`` set
    fields directly (non-option fields, or overrides); a :func:`nested` field is built
    from the namespace."""
    built = {f.name: f.metadata["nested_build"](namespace) for f in _nested_fields(cls)}
    return cls(**(given_options(cls, namespace) | built | values))


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def load_config(cls: type, path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{field: value}`` from the TOML file ``path`` of ``key = value`` lines whose keys
    are field names of dataclass ``cls`` (as in ``dataclasses.asdict``).

    A value means what the same value means on the command line: an option with ``parse``
    takes its text (a list is the comma list: ``losses = ["kd", "crcd"]`` is ``--loss
    kd,crcd``; a repeatable option takes a string or a list of strings), a switch takes
    ``true``/``false``, numbers and strings are checked against the field's type and
    ``choices``.  Relative paths in values are relative to the working directory, as on
    the command line.  A missing file, a TOML syntax error, an unknown key or a value of
    the wrong kind is a one-line :class:`~lrface.errors.LrfaceError` naming the file (and
    the key).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except OSError as exc:
        raise LrfaceError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise LrfaceError(f"{path}: not a TOML config file ({exc})") from None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    for key, value in table.items():
        f = fields.get(key)
        if f is None:
            raise LrfaceError(
                f"{path}: unknown key {key!r}{_suggest(cls, key, list(fields))}; the keys are "
                f"the field names of {cls.__name__}"
            )
        try:
            values[key] = _file_value(f, _scalar_type(hints[key]), value)
        except LrfaceError as exc:
            raise LrfaceError(f"{path}: {key}: {exc}") from None
    return values


def _suggest(cls: type, key: str, names: list[str]) -> str:
    """`` (did you mean 'x'?)`` for a key that is a flag's name or close to a field name."""
    import difflib

    by_flag = {flag_of(f).lstrip("-").replace("-", "_"): f.name for f in option_fields(cls)}
    near = by_flag.get(key) or next(iter(difflib.get_close_matches(key, names, 1)), None)
    return f" (did you mean {near!r}?)" if near else ""


def _file_value(f: dataclasses.Field[Any], kind: type | None, value: Any) -> Any:
    """A config-file value of field ``f`` (scalar type ``kind``), converted as
    :func:`load_config` says."""
    md = f.metadata
    parse = md.get("parse")
    if parse is not None and kind is not bool:
        if md.get("repeat"):
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise LrfaceError(f"{value!r} is not a string or a list of strings")
            return parse(items)
        if isinstance(value, list) and not any(isinstance(x, list | dict) for x in value):
            return parse(",".join(str(x) for x in value))
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return parse(str(value))
        raise LrfaceError(f"{value!r} is not a value of {flag_of(f)}")
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }
    if kind is None or not ok[kind]:
        raise LrfaceError(f"{value!r} is not {_TYPE_WORDS[kind] if kind else 'settable here'}")
    choices = md.get("choices")
    if choices is not None and value not in choices:
        raise LrfaceError(f"{value!r}: use one of {', '.join(choices)}")
    return float(value) if kind is float else value
