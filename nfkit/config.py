"""One configuration base for every stage: dataclass fields with help, presets, nested groups,
dotted ``--set key=value`` overrides, and resolution before storage.

A stage config is a frozen dataclass deriving from :class:`StageConfig`::

    @dataclass(frozen=True)
    class OptimConfig(StageConfig):
        lr: float = option(1e-4, "AdamW learning rate", check=lambda v: v > 0, must="> 0")

    @dataclass(frozen=True)
    class TrainConfig(StageConfig):
        epochs: int = option(250, "training epochs", check=lambda v: v >= 1, must=">= 1")
        optim: OptimConfig = group(OptimConfig, "optimiser")

    PRESETS = Presets(TrainConfig, paper=TrainConfig(), tiny=TrainConfig(epochs=2))
    cfg = PRESETS.resolve("tiny", {"optim.lr": "3e-4"})   # ConfigError on a bad key or value
    cfg.to_dict()                                         # {"epochs": 2, "optim": {"lr": 0.0003}}

- ``option(default, help, choices=..., check=..., must=...)``: the help is the CLI help
  (:func:`field_help`), ``choices`` lists the valid strings, ``check`` is validated on
  construction (a :class:`~nfkit.errors.ConfigError` naming the dotted key);
- ``group(cls, help)``: a nested group; its keys are addressed as ``group.key``;
- values from ``--set`` are strings, parsed by the field's declared type (bool, int, float, str,
  tuples of those, nested groups); anything else is a one-line ``ConfigError``;
- :meth:`StageConfig.resolved` returns the config as it actually runs (e.g. ``sampler=auto`` ->
  the sampler chosen on this device); store that one (``to_dict``) in artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Generic, TypeVar

from nfkit.errors import ConfigError

C = TypeVar("C", bound="StageConfig")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def option(
    default: Any,
    help: str,  # noqa: A002 - reads best at the call sites
    *,
    choices: Iterable[str] | None = None,
    check: Callable[[Any], bool] | None = None,
    must: str = "",
) -> Any:
    """A config field: ``help`` for ``--help``; ``choices`` and ``check`` (with ``must``, the
    rule in words, e.g. ``">= 1"``) are validated when the config is built."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "check": check, "must": must}
    return dataclasses.field(default=default, metadata=meta)


def group(cls: type, help: str) -> Any:  # noqa: A002
    """A nested group of options (a :class:`StageConfig` dataclass) with its defaults."""
    return dataclasses.field(default_factory=cls, metadata={"help": help, "group": True})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class StageConfig:
    """Base of every stage config (use as a frozen dataclass base)."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("group"):
                continue
            choices, check = f.metadata.get("choices"), f.metadata.get("check")
            if choices and value not in choices:
                raise ConfigError(f"{f.name}={value!r}: expected one of {', '.join(choices)}")
            if not _type_ok(value, hints[f.name]):
                raise ConfigError(f"{f.name}={value!r}: expected {_type_name(hints[f.name])}")
            if check is not None and not check(value):
                raise ConfigError(f"{f.name}={value!r}: must be {f.metadata.get('must') or 'valid'}")
        self.validate()

    def validate(self) -> None:
        """Rules across fields; raise :class:`ConfigError`. Default: none."""

    def resolved(self: C, **context: Any) -> C:
        """The config as it actually runs in ``context`` (device, ...). Default: itself."""
        return self

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists, groups nested dicts)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, StageConfig) else list(v) if isinstance(v, tuple) else v
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any], prefix: str = "") -> C:
        """Inverse of :meth:`to_dict`; ConfigError on unknown keys or wrong types."""
        hints = _hints(cls)
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}")
        kw: dict[str, Any] = {}
        for name, value in d.items():
            hint = hints[name]
            if known[name].metadata.get("group"):
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{prefix}{name}: expected a group of keys, got {value!r}")
                kw[name] = hint.from_dict(value, prefix=f"{prefix}{name}.")
            else:
                kw[name] = _coerce(f"{prefix}{name}", value, hint)
        return cls(**kw)

    def override(self: C, overrides: Mapping[str, Any] | None, prefix: str = "") -> C:
        """A copy with dotted ``key=value`` overrides applied (strings are parsed by type)."""
        nested: dict[str, dict[str, Any]] = {}
        flat: dict[str, Any] = {}
        known = {f.name: f for f in fields(self)}  # type: ignore[arg-type]
        hints = _hints(type(self))
        for key, raw in (overrides or {}).items():
            head, _, rest = key.partition(".")
            full = prefix + key
            if head not in known:
                valid = ", ".join(prefix + k for k in sorted(field_help(type(self))))
                raise ConfigError(f"unknown config key {full!r}; valid keys: {valid}")
            if known[head].metadata.get("group"):
                if not rest:
                    raise ConfigError(f"{full!r} is a group; set one of its keys, e.g. {full}.<key>=value")
                nested.setdefault(head, {})[rest] = raw
            elif rest:
                raise ConfigError(f"unknown config key {full!r} ({prefix + head} is not a group)")
            else:
                flat[head] = _coerce(full, raw, hints[head])
        for head, sub in nested.items():
            try:
                flat[head] = getattr(self, head).override(sub, prefix=f"{prefix}{head}.")
            except ConfigError as exc:
                text = str(exc)
                raise ConfigError(text if text.startswith(("unknown", "'", prefix + head)) else f"{prefix}{head}.{text}") from None
        return dataclasses.replace(self, **flat)  # type: ignore[type-var]


# ---------------------------------------------------------------------- types
def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        return f"a comma-separated list of {_type_name(args[0])}s"
    return {bool: "a bool", int: "an int", float: "a float", str: "a string"}.get(hint, str(hint))


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        return isinstance(value, tuple) and all(_type_ok(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if hint is str:
        return isinstance(value, str)
    return True


def _coerce(key: str, raw: Any, hint: Any) -> Any:
    """``raw`` (a string from ``--set``, or a JSON value) as the type ``hint``."""
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            (item,) = typing.get_args(hint)[:1]
            if isinstance(raw, str):
                parts = [p for p in raw.strip().strip("[]()").split(",") if p.strip()]
            elif isinstance(raw, (list, tuple)):
                parts = list(raw)
            else:
                raise ValueError
            return tuple(_coerce(key, p, item) for p in parts)
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            low = str(raw).strip().lower()
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise ValueError
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, int):
                return raw
            text = str(raw).strip()
            try:
                return int(text)
            except ValueError:
                value = float(text)  # accepts e.g. 1e5
                if not math.isfinite(value) or not value.is_integer():
                    raise
                return int(value)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError
            value = float(str(raw).strip()) if isinstance(raw, str) else float(raw)
            if math.isnan(value):
                raise ValueError
            return value
        if hint is str:
            if not isinstance(raw, str):
                raise ValueError
            return raw.strip()
    except (ValueError, TypeError):
        raise ConfigError(f"{key}={raw!r}: expected {_type_name(hint)}") from None
    return raw


# ---------------------------------------------------------------------- presets and help
class Presets(Generic[C]):
    """Named presets of one config class (``paper``, ``cpu``, ``tiny``, ...)."""

    def __init__(self, cls: type[C], **presets: C) -> None:
        self.cls = cls
        self._presets = dict(presets)

    def __getitem__(self, name: str) -> C:
        return self._presets[name]

    def __contains__(self, name: object) -> bool:
        return name in self._presets

    def __iter__(self):
        return iter(self._presets)

    def __len__(self) -> int:
        return len(self._presets)

    def items(self):
        return self._presets.items()

    def get(self, name: str) -> C:
        """The preset ``name`` (case-insensitive); a typo lists the valid names."""
        key = name.strip().lower()
        if key not in self._presets:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(self._presets)}")
        return self._presets[key]

    def resolve(self, preset: str, overrides: Mapping[str, Any] | None = None) -> C:
        """A preset with dotted overrides applied."""
        return self.get(preset).override(overrides)


def field_help(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted key -> help text of every option of ``cls`` (groups expanded)."""
    hints = _hints(cls)
    out: dict[str, str] = {}
    for f in fields(cls):
        if f.metadata.get("group"):
            out.update(field_help(hints[f.name], prefix=f"{prefix}{f.name}."))
            continue
        text = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            text += f" ({' | '.join(f.metadata['choices'])})"
        out[prefix + f.name] = text
    return out


def parse_set_options(items: Iterable[str] | None) -> dict[str, str]:
    """``["steps=100", "optim.lr=0.01"]`` -> ``{"steps": "100", "optim.lr": "0.01"}``."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        if not k.strip():
            raise ConfigError(f"--set {item!r}: empty key")
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every differing (dotted) key of two ``to_dict`` results."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, MISSING), new.get(key, MISSING)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            diffs.extend(config_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            show = lambda v: "(none)" if v is MISSING else json.dumps(v)  # noqa: E731
            diffs.append(f"{prefix}{key}: {show(a)} -> {show(b)}")
    return diffs


def is_config(obj: Any) -> bool:
    return is_dataclass(obj) and isinstance(obj, StageConfig)


__all__ = [
    "Presets",
    "StageConfig",
    "config_diff",
    "field_help",
    "group",
    "is_config",
    "option",
    "parse_set_options",
]
