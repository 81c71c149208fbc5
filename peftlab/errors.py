"""Errors a user can act on: the CLI prints them as one line instead of a traceback."""


class PeftlabError(Exception):
    """Base of every user-facing error; its message alone must tell what to change."""


class ConfigError(PeftlabError):
    """A config key has a value that is not allowed (raised before any model is loaded)."""


class DataError(PeftlabError):
    """A dataset file or split cannot be used as configured (names the file and the first bad row)."""
