"""Checks shared by the config schemas: a failed one names the field, its value and what is allowed."""

from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException


class SettingError(ValueError):
    """A field has a disallowed value; validate() prefixes the group to form the full key."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(f"{key}={value!r}: {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise SettingError(key, value, allowed)


def check_choice(key: str, value: Any, choices: tuple) -> None:
    check(value in choices, key, value, "allowed values are " + ", ".join(map(str, choices)))


def check_positive(key: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    check(value is not None and value > 0, key, value, "must be > 0")


def schema_error(err: OmegaConfBaseException, prefix: str = "") -> str:
    """What OmegaConf refused against a schema (while Hydra composes, or in validate()) as one line naming the full
    key: `model.nme: unknown key; allowed keys are ...`, `dataset.batch_size: Value 'abc' ... to Integer`."""
    key = ".".join(part for part in (prefix, str(getattr(err, "full_key", None) or "")) if part)
    schema = getattr(err, "object_type", None)
    names = sorted(f.name for f in fields(schema)) if isinstance(schema, type) and is_dataclass(schema) else None
    if isinstance(err, ConfigKeyError | ConfigAttributeError) and getattr(err, "key", None) not in (names or ()):
        if names is None:  # an open section (a plain dict in struct mode): a new key needs Hydra's `+`
            return f"{key}: unknown key (add one with +{key}=...)"
        return f"{key}: unknown key; allowed keys are {', '.join(names)}"
    message = (getattr(err, "msg", None) or str(err)).strip().splitlines()
    return f"{key}: {message[0] if message else type(err).__name__}"
