"""Secrets that training jobs carry in their own fields, masked before they reach tidy tables.

raw_payloads keeps the exact bytes on purpose (it is the system of record and the
rebuild source); the tidy tables are what people query, export and share.
"""
from __future__ import annotations

import re
from functools import lru_cache

MASK = "***REDACTED***"

_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "secret", "token", "credential", "credentials", "ak", "sk", "apikey"}
)
_SECRET_PAIRS = ("accesskey", "secretkey", "privatekey", "apikey", "accesstoken", "secretaccess", "password")
_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # hfToken -> hf_Token, clientSecret -> client_Secret

# --password=x, --password x, --sk=x, PASSWORD=x, -p? (no: too many false positives)
_FLAG_NAMES = r"[A-Za-z0-9_.-]*(?:password|passwd|pwd|secret|token|access[_-]?key|secret[_-]?key|api[_-]?key|credentials?)|ak|sk"
_COMMAND_SECRET = re.compile(
    rf"(?i)(?P<lead>(?:^|\s)(?:--?)?(?:{_FLAG_NAMES}))(?P<sep>=|\s+)(?P<val>\"[^\"]*\"|'[^']*'|\S+)"
)
# scheme://user:password@host: git clone https://me:ghp_xxx@github.com/..., obs://AK:SK@bucket/...
_URL_USERINFO = re.compile(r"(?i)(?P<lead>\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:)[^\s/@'\"]+(?=@)")


@lru_cache(maxsize=4096)  # labels repeat across versions: decide each once
def is_secret_label(label: str | None) -> bool:
    if not label:
        return False
    low = _CAMEL.sub("_", label).lower()
    compact = _SPLIT.sub("", low)
    if any(pair in compact for pair in _SECRET_PAIRS):
        return True
    return any(word in _SECRET_WORDS for word in _SPLIT.split(low))


def redact_command(command: str | None) -> str | None:
    """Mask the value of every secret-looking flag or VAR=value in a shell command."""
    if not command:
        return command
    command = _COMMAND_SECRET.sub(lambda m: f"{m.group('lead')}{m.group('sep')}{MASK}", command)
    return _URL_USERINFO.sub(lambda m: f"{m.group('lead')}{MASK}", command) if "@" in command else command


_QUERY_PARAM = re.compile(r"(?P<lead>[?&;](?P<name>[^=&#\s]+)=)(?P<val>[^&#\s]*)")


def redact_url(text: str | None) -> str | None:
    """Mask credentials in URLs: `user:password@` and the values of secret-looking query parameters
    (`?token=...`, `&access_key=...`), as v2 endpoints and OBS/SWR addresses may carry them."""
    if not text:
        return text
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m.group('lead')}{MASK}", text)
    if "=" in text:
        text = _QUERY_PARAM.sub(lambda m: m.group("lead") + (MASK if is_secret_label(m.group("name"))
                                                            else m.group("val")), text)
    return text


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def redact_value(field: str, value):
    """A value about to be shown in field_issues, with secrets masked.

    The whole value if the field's own name looks secret (`obs_secret_key`); inside an
    object or list, values under secret-looking keys, `{"label": "password", "value": ...}`
    items, and secret flags in strings. field_issues keeps what could not be typed, which
    is exactly where a parameter list sent as an object ({"password": "..."}) ends up.
    """
    names = _NAME.findall(field or "")
    if names and is_secret_label(names[-1]):
        return MASK
    return _mask(value)


def _mask(value):
    if isinstance(value, str):
        return redact_command(value)
    if isinstance(value, dict):
        secret_item = "value" in value and isinstance(value.get("label"), str) and is_secret_label(value["label"])
        return {k: MASK if (secret_item and k == "value") or (is_secret_label(k) and v is not None) else _mask(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value
