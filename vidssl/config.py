"""Typed configs and ``key=value`` overrides for every subcommand.

Each subcommand owns one frozen dataclass that holds every default exactly once. Field metadata
carries the help text (``field(default=..., metadata={"help": "..."})``), so ``vidssl CMD --help``
and the error for an unknown key are generated from the dataclass itself.

Values are parsed with :func:`ast.literal_eval` (never ``eval``) and then coerced to the field's
annotated type, so ``steps=100`` is an int, ``resize=None`` is None, ``path=runs/x`` stays a string.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A bad ``key=value`` override: unknown key, malformed pair, or a value of the wrong type."""


def option(default: Any, help: str, *, min: float | None = None) -> Any:  # noqa: A002 - read best at call sites
    """A dataclass field with its help text; mutable defaults are wrapped in a factory.

    ``min``: the smallest value the key accepts (checked by :func:`check_values` at parse time, so
    ``steps=0`` is an error before any work, not a run that silently does nothing)."""
    metadata = {"help": help} if min is None else {"help": help, "min": min}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_values(cfg: Any) -> Any:
    """``cfg`` itself if every number in it is finite and every key with a ``min`` (see
    :func:`option`) is at least that; else ConfigError naming the key, the value and the bound."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{f.name}={value}: must be a finite number")
        bound = f.metadata.get("min")
        if bound is not None and value < bound:
            raise ConfigError(f"{f.name}={value}: must be at least {bound}")
    return cfg


def _parse_literal(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError):  # TypeError: e.g. {[1]: 2}, an unhashable key
        return text  # bare words and paths are strings


def _coerce(key: str, value: Any, annotation: Any, raw: str | None = None) -> Any:
    """Coerce a parsed value to a (possibly Optional / Union) annotation, or raise ConfigError.

    ``raw`` is the text as typed: str and Path fields keep it verbatim when it parsed as something
    else, so ``out=1.10`` is the folder "1.10" (not "1.1") and ``name=on`` stays "on" (not "True").
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg, raw)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: cannot parse {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin in (tuple, list):
        (item_type, *rest) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str):  # bare words: a, b  or  (a, b)  or  [a, b]
            value = tuple(v.strip() for v in value.strip().strip("()[]").split(",") if v.strip())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{key}={value!r}: expected a list like (1, 2)")
        items = [v if item_type in (Any, Ellipsis) else _coerce(key, v, item_type) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}={value!r}: expected an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r}: expected a number")
        return float(value)
    if annotation in (str, Path):
        text = value if isinstance(value, str) else raw.strip() if raw is not None else str(value)
        return Path(text) if annotation is Path else text
    return value


def fields_help(cls: type) -> list[tuple[str, str, str]]:
    """(key, default, help) for every field of a config dataclass, in declaration order."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((f.name, repr(default) if isinstance(default, str) else str(default), f.metadata.get("help", "")))
    return rows


def parse_overrides(cls: type[C], pairs: list[str], *, base: C | None = None) -> C:
    """Build ``cls`` from ``key=value`` strings (on top of ``base`` if given).

    Raises:
        ConfigError: on a pair without ``=``, an unknown key (with a "did you mean" suggestion),
            or a value that does not fit the field's type.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {pair!r}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown key '{key}'{hint}")
        values[key] = _coerce(key, _parse_literal(raw), hints[key], raw)
    if base is not None:
        return check_values(dataclasses.replace(base, **values))  # type: ignore[type-var]
    return check_values(cls(**values))


def typed_values(cls: type, values: dict[str, Any], source: object) -> dict[str, Any]:
    """``values`` (from a recipe, a ``config.yaml`` or a checkpoint) coerced to ``cls``'s field types
    exactly as command-line values are, so ``lr: fast`` in a recipe is refused like ``lr=fast``;
    YAML strings that the command line would parse (``1e-4``: PyYAML reads it as text) are parsed.

    Raises:
        ConfigError: naming ``source`` (the file) and the key; unknown keys are the caller's matter.
    """
    hints = typing.get_type_hints(cls)
    typed = {}
    for key, value in values.items():
        if key not in hints:
            typed[key] = value
            continue
        parsed = _parse_literal(value) if isinstance(value, str) else value
        try:
            typed[key] = _coerce(key, parsed, hints[key], value if isinstance(value, str) else None)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return typed


def to_dict(cfg: Any) -> dict[str, Any]:
    """A YAML/JSON-safe dict of a config (Paths as strings, tuples as lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
