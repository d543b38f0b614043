"""Validated dataclass configs: from dicts and YAML, back to YAML, with ``key=value`` overrides.

One small mechanism for every config in vitaccel (accelerators, training recipes). A config is a
dataclass whose fields carry type hints; ``from_dict`` checks every key and value against them and
against the field's ``metadata["choices"]`` / ``metadata["check"]``, and every error names the
key (dotted path), the value and what is allowed. ``shipped``/``shipped_names`` find the YAML
files that ship inside the package (presets, recipes, energy tables). It imports nothing else of
vitaccel but ``errors``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import yaml

from vitaccel.errors import ConfigError

T = TypeVar("T")

SHIPPED_KINDS = ("accelerators", "train", "energy")


def _shipped_dir(kind: str) -> Path:
    if kind not in SHIPPED_KINDS:
        raise ValueError(f"kind: value {kind!r} is not allowed; choose one of {list(SHIPPED_KINDS)}")
    return Path(str(resources.files("vitaccel") / "configs" / kind))


def shipped_names(kind: str) -> list[str]:
    """Names (file stems) of the YAML configs of ``kind`` shipped inside the package."""
    folder = _shipped_dir(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def shipped(kind: str, name: str) -> Path:
    """The shipped YAML config ``name`` of ``kind`` (accelerators, train, energy); ConfigError if unknown."""
    path = _shipped_dir(kind) / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{kind} config {name!r} is unknown; choose one of {shipped_names(kind)} or pass a YAML file")
    return path


def field(default: Any = dataclasses.MISSING, *, choices: tuple | None = None,
          check: Callable[[Any], str | None] | None = None, help: str = "",
          default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with validation metadata.

    ``choices`` lists the allowed values; ``check(value)`` returns an error text (what is
    allowed) or None when the value is fine.
    """
    meta = {"choices": choices, "check": check, "help": help}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: value None is not allowed (expected {_type_name(tp)})")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{key}: value {value!r} matches none of {_type_name(tp)}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: value {value!r} is not allowed; choose one of {list(allowed)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str) and "," in value:  # key=0.9,0.7 on the command line
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):  # key=0.9: a list of one
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: value {value!r} is not a list")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: value {value!r} must be a mapping of {tp.__name__} keys")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: value {value!r} is not allowed; use true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: value {value!r} is not allowed; an integer is required")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 2e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: value {value!r} is not allowed; a number is required")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: value {value!r} is not allowed; a string is required")
    return value


def from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, validating every key and value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key; allowed keys are {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: required key is missing")
            continue
        value = data[name]
        if isinstance(value, dict) and dataclasses.is_dataclass(hints[name]) \
                and f.default_factory is not dataclasses.MISSING:
            value = {**to_dict(f.default_factory()), **value}  # a partial section keeps this field's defaults
        value = _convert(value, hints[name], key)
        _check(f, value, key)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # from the section's own checks: name its keys in full
        if prefix and not str(exc).startswith(prefix):
            raise ConfigError(f"{prefix}{exc}") from None
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from exc


def _check(f: dataclasses.Field, value: Any, key: str) -> None:
    choices = f.metadata.get("choices")
    if choices is not None and value is not None and value not in choices:
        raise ConfigError(f"{key}: value {value!r} is not allowed; choose one of {list(choices)}")
    check = f.metadata.get("check")
    if check is not None and value is not None:
        problem = check(value)
        if problem:
            raise ConfigError(f"{key}: value {value!r} is not allowed; {problem}")


def validate(obj: Any, prefix: str = "") -> None:
    """Re-run the per-field checks of a constructed dataclass (call from ``__post_init__``)."""
    for f in dataclasses.fields(obj):
        _check(f, getattr(obj, f.name), prefix + f.name)


def to_dict(obj: Any) -> dict:
    """A plain dict (nested dataclasses included) suitable for YAML."""
    return dataclasses.asdict(obj)


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
    return data


def check_writable(path: str | Path, key: str) -> Path:
    """Check, before long work, that folder ``path`` can be created and written to; creates nothing.

    Raises ConfigError naming ``key`` when it cannot (read-only, a file in the way, no permission).
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{str(existing)!r} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}: folder {str(path)!r} is not writable ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None
    return path


def _set(data: dict, key: str, value: Any) -> dict:
    """A copy of ``data`` with dotted ``key`` set to ``value`` (sections copied, created if missing)."""
    head, _, rest = key.strip().partition(".")
    data = dict(data)
    if rest:
        child = data.get(head)
        data[head] = _set(child if isinstance(child, dict) else {}, rest, value)
    else:
        data[head] = value
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key=value`` strings (dotted keys for nested configs; values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        data = _set(data, key, yaml.safe_load(raw) if raw.strip() else None)
    return dict(data)


# --- the command-line grammar shared by every ``vitaccel`` command -------------------------------
#
#   vitaccel COMMAND [--config FILE|NAME] [key=value ...] [--flag VALUE ...]
#
# Every option of a command is a key of its validated config dataclass; ``key=value`` sets any key
# (dotted for sections), a ``--flag`` is a short name for one key, ``--config`` a YAML file of keys.


@dataclasses.dataclass(frozen=True)
class Flag:
    """``--name VALUE`` as a short name for config key ``key``; ``switch``: ``--name`` alone sets it true."""

    name: str
    key: str
    switch: bool = False


def _defaults(cls: type) -> dict:
    """Default value of every field of ``cls`` that has one."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def keys_help(cls: type, flags: tuple[Flag, ...] = (), prefix: str = "", defaults: dict | None = None) -> list[str]:
    """One line per config key of ``cls`` (nested sections dotted): key=default, its help, its flag.
    ``defaults``: the values to show instead of the class's own (a section's default instance)."""
    hints = typing.get_type_hints(cls)
    defaults = _defaults(cls) if defaults is None else defaults
    by_key = {f.key: f.name for f in flags}
    lines = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key, default = prefix + f.name, defaults.get(f.name, dataclasses.MISSING)
        if dataclasses.is_dataclass(hints[f.name]):
            lines += keys_help(hints[f.name], flags, key + ".", to_dict(default) if dataclasses.is_dataclass(default)
                               else None)
            continue
        shown = "(required)" if default is dataclasses.MISSING else \
            yaml.safe_dump(default, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
        text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if choices:
            text += f" ({' | '.join(map(str, choices))})"
        if key in by_key:
            text += f" [{by_key[key]}]"
        lines.append(f"  {key + '=' + shown:<30} {text}".rstrip())
    return lines


def add_config_arguments(p: Any, config: Callable[[], type], flags: tuple[Flag, ...],
                         config_help: str = "YAML file of this command's keys", metavar: str = "FILE") -> None:
    """Give argparse parser ``p`` the shared grammar for the keys of dataclass ``config()``:
    ``--config``, positional ``key=value`` overrides and ``flags``. ``config`` is called only when
    the help is shown, so a command whose config imports torch still starts fast."""
    import argparse
    import textwrap

    if p.description:
        p.description = textwrap.fill(p.description, 100)
    p.add_argument("--config", metavar=metavar, help=config_help)
    for flag in flags:
        if not flag.switch:
            p.add_argument(flag.name, dest=f"flag:{flag.key}", metavar=flag.key.split(".")[-1].upper(),
                           help=f"sets {flag.key}")
        else:
            p.add_argument(flag.name, dest=f"flag:{flag.key}", action="store_const", const=True,
                           help=f"sets {flag.key}=true")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="set any config key listed below")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.config_keys = lambda: ("config keys (key=default, [flag], help); set with key=value, a --flag, or in the "
                             "--config YAML:\n" + "\n".join(keys_help(config(), flags)))
    p.set_defaults(config_flags=flags)


def flag_overrides(args: Any) -> tuple[list[str], dict[str, str]]:
    """The ``key=value`` overrides that parsed ``args`` hold: the flags' first, then the positional
    ones; and, for keys last set by a flag, key -> flag name."""
    overrides, named = [], {}
    for flag in getattr(args, "config_flags", ()):
        raw = getattr(args, f"flag:{flag.key}", None)
        if raw is not None:
            overrides.append(f"{flag.key}={'true' if flag.switch else raw}")
            named[flag.key] = flag.name
    for item in args.overrides:
        overrides.append(item)
        named.pop(item.split("=", 1)[0].strip(), None)
    return overrides, named


@contextlib.contextmanager
def flags_named(named: dict[str, str]) -> Iterator[None]:
    """A ConfigError about a key that a flag set names the flag (``--batch-size: ...``)."""
    try:
        yield
    except ConfigError as exc:
        text = str(exc)
        for key, flag in named.items():
            if text.startswith((f"{key}:", f"{key}[")):
                raise ConfigError(flag + text[len(key):]) from None
        raise


def config_from_args(cls: type[T], args: Any) -> T:
    """The validated ``cls`` from parsed ``args`` (see ``add_config_arguments``): the ``--config``
    YAML, then the flags, then the ``key=value`` overrides."""
    overrides, named = flag_overrides(args)
    with flags_named(named):
        base = load_yaml(args.config) if args.config is not None else {}
        return from_dict(cls, apply_overrides(base, overrides))
