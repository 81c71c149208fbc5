"""Checks shared by the config schemas: a failed one names the field, its value and what is allowed."""

from typing import Any


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
