"""Secrets that training jobs carry in their own fields, masked before they reach tidy tables.

raw_payloads keeps the exact bytes on purpose (it is the system of record and the
rebuild source); the tidy tables are what people query, export and share.
"""
from __future__ import annotations

import re

MASK = "***REDACTED***"

_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "credential", "credentials", "ak", "sk", "apikey"}
)
_SECRET_PAIRS = ("accesskey", "secretkey", "privatekey", "apikey", "accesstoken", "secretaccess", "password")
_SPLIT = re.compile(r"[^a-z0-9]+")

# --password=x, --password x, --sk=x, PASSWORD=x, -p? (no: too many false positives)
_FLAG_NAMES = r"[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|access[_-]?key|secret[_-]?key|api[_-]?key|credentials?)|ak|sk"
_COMMAND_SECRET = re.compile(
    rf"(?i)(?P<lead>(?:^|\s)(?:--?)?(?:{_FLAG_NAMES}))(?P<sep>=|\s+)(?P<val>\"[^\"]*\"|'[^']*'|\S+)"
)


def is_secret_label(label: str | None) -> bool:
    if not label:
        return False
    low = label.lower()
    compact = _SPLIT.sub("", low)
    if any(pair in compact for pair in _SECRET_PAIRS):
        return True
    return any(word in _SECRET_WORDS for word in _SPLIT.split(low))


def redact_command(command: str | None) -> str | None:
    """Mask the value of every secret-looking flag or VAR=value in a shell command."""
    if not command:
        return command
    return _COMMAND_SECRET.sub(lambda m: f"{m.group('lead')}{m.group('sep')}{MASK}", command)
