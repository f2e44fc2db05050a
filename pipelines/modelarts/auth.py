"""Credentials for the ModelArts API: a token, an IAM password login, or AK/SK signing.

Environment variables (credentials are read from the environment only, never flags):

    MODELARTS_TOKEN            an IAM token, sent as X-Auth-Token (valid 24 h; not renewable)
    HUAWEICLOUD_SDK_AK         access key  } AK/SK request signing (SDK-HMAC-SHA256);
    HUAWEICLOUD_SDK_SK         secret key  } works for every project and region
    HUAWEICLOUD_SDK_SECURITY_TOKEN   optional, for temporary AK/SK (sent as X-Security-Token)
    MODELARTS_IAM_USER         IAM user name         } IAM password login: a token per project,
    MODELARTS_IAM_PASSWORD     its password          } cached until shortly before it expires
    MODELARTS_IAM_DOMAIN       account (domain) name; defaults to the user name
    MODELARTS_IAM_ENDPOINT     e.g. https://iam.cn-north-4.myhuaweicloud.com; by default derived
                               from https://modelarts.{region}.myhuaweicloud.com

The first complete set wins, in that order. Every auth object has the same three
methods: `headers(method, url, project_id)` for one attempt of a request,
`refresh(project_id, rejected_headers)` after a 401 (True if a retry can help), and
`describe()`, a line for the user that names the method but never a secret.

The signer is written here because the official one (huaweicloudsdkcore) is a heavy
dependency for 40 lines; tests check it against Huawei's published worked example.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import quote, unquote, urlsplit

import requests

from pipelines.modelarts.deadline import DeadlineAdapter, deadline
from pipelines.modelarts.errors import AuthError, CredentialsError, EndpointError
from pipelines.modelarts.retry import RETRYABLE_STATUSES, RetryPolicy

log = logging.getLogger(__name__)

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW = 15 * 60  # seconds; the gateway refuses signatures older than this
_AUTH_HEADER = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=(?P<ak>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)$"
)


# -- AK/SK signing -----------------------------------------------------------------
def _encode(text: str) -> str:
    """RFC 3986: everything but unreserved characters is percent-encoded."""
    return quote(text, safe="-_.~")


def canonical_uri(path: str) -> str:
    """Each path segment decoded then re-encoded; always ends with '/' (the gateway's rule)."""
    uri = "/".join(_encode(unquote(segment)) for segment in (path or "/").split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: str) -> str:
    """Pairs decoded, re-encoded, sorted by name then value, joined with '&'."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str], signed: list[str],
                      body: bytes = b"") -> str:
    """The text whose hash is signed; `headers` keys are lower-case."""
    lines = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    return "\n".join((method.upper(), canonical_uri(path), canonical_query(query), lines, ";".join(signed),
                      hashlib.sha256(body).hexdigest()))


def string_to_sign(canonical: str, sdk_date: str) -> str:
    return f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(secret_key: str, text: str) -> str:
    return hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def host_header(url: str) -> str:
    """host[:port] as sent in the Host header: no credentials, no default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def sign(method: str, url: str, access_key: str, secret_key: str, *, body: bytes = b"",
         headers: Mapping[str, str] | None = None, when: datetime | None = None) -> dict[str, str]:
    """The headers to send: `headers` plus Host, X-Sdk-Date and Authorization.

    Every header passed in is signed, so pass only those that reach the server unchanged.
    """
    when = when or datetime.now(timezone.utc)
    out = dict(headers or {})
    out["X-Sdk-Date"] = when.strftime(DATE_FORMAT)
    if not any(name.lower() == "host" for name in out):
        out["Host"] = host_header(url)
    lower = {name.lower(): value for name, value in out.items()}
    signed = sorted(lower)
    parts = urlsplit(url)
    canonical = canonical_request(method, parts.path, parts.query, lower, signed, body)
    sig = signature(secret_key, string_to_sign(canonical, out["X-Sdk-Date"]))
    out["Authorization"] = f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    return out


def verify_signature(method: str, target: str, headers: Mapping[str, str], body: bytes, keys: Mapping[str, str],
                     *, now: datetime | None = None, max_skew: float = MAX_CLOCK_SKEW) -> str | None:
    """The server side (the simulator's): None if the request is signed correctly, else why not.

    `target` is the request target as received (path?query); `keys` maps AK -> SK.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    match = _AUTH_HEADER.match(lower.get("authorization", "").strip())
    if not match:
        return "missing or malformed SDK-HMAC-SHA256 Authorization header"
    secret_key = keys.get(match["ak"])
    if secret_key is None:
        return "unknown access key"
    signed = match["signed"].split(";")
    if "x-sdk-date" not in signed or "host" not in signed or any(name not in lower for name in signed):
        return "host and x-sdk-date must be signed, and every signed header sent"
    try:
        when = datetime.strptime(lower["x-sdk-date"], DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return "X-Sdk-Date is not YYYYMMDDTHHMMSSZ"
    if abs(((now or datetime.now(timezone.utc)) - when).total_seconds()) > max_skew:
        return "X-Sdk-Date is too far from the server's clock"
    path, _, query = target.partition("?")
    canonical = canonical_request(method, path, query, lower, signed, body)
    expected = signature(secret_key, string_to_sign(canonical, lower["x-sdk-date"]))
    return None if hmac.compare_digest(expected, match["sig"].lower()) else "signature does not match"


# -- the three ways to authenticate ------------------------------------------------
class StaticToken:
    """A token obtained elsewhere. It cannot be renewed, so a 401 is final."""

    def __init__(self, token: str, source: str = "MODELARTS_TOKEN"):
        self._token = token.strip()
        self._source = source

    def headers(self, method: str, url: str, project_id: str, body: bytes = b"") -> dict[str, str]:
        return {"X-Auth-Token": self._token}

    def refresh(self, project_id: str, rejected: Mapping[str, str]) -> bool:
        return False

    def describe(self) -> str:
        return f"token from {self._source}"

    def __repr__(self) -> str:
        return f"StaticToken(source={self._source!r})"


class AkSk:
    """Signs every attempt afresh (the signature covers X-Sdk-Date, valid 15 minutes)."""

    def __init__(self, access_key: str, secret_key: str, security_token: str | None = None):
        self._ak, self._sk, self._security_token = access_key.strip(), secret_key.strip(), security_token

    def headers(self, method: str, url: str, project_id: str, body: bytes = b"") -> dict[str, str]:
        extra = {"X-Security-Token": self._security_token} if self._security_token else None
        return sign(method, url, self._ak, self._sk, headers=extra, body=body)

    def refresh(self, project_id: str, rejected: Mapping[str, str]) -> bool:
        return False

    def describe(self) -> str:
        return "AK/SK signing (HUAWEICLOUD_SDK_AK/SK)" + (" with a security token" if self._security_token else "")

    def __repr__(self) -> str:
        return "AkSk(access_key=***)"


class IamPassword:
    """IAM password login, one token per project (tokens are project-scoped), cached.

    A token is reused until `margin` before its `expires_at` (a tenth of its lifetime,
    at most 5 minutes), then fetched again. After a 401 the cached token is dropped and
    a new one fetched, once per rejected token however many threads saw the 401.
    """

    def __init__(self, iam_endpoint: str, user: str, password: str, domain: str | None = None, *,
                 timeout: tuple[float, float] = (5.0, 30.0), verify: bool = True,
                 retry: RetryPolicy | None = None, deadline: float = 60.0):
        self.iam_endpoint = iam_endpoint.rstrip("/")
        self.user, self._password, self.domain = user, password, domain or user
        self._timeout, self._verify, self._retry = timeout, verify, retry or RetryPolicy(max_retries=2)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float]] = {}  # project_id -> (token, monotonic deadline)
        self._session = requests.Session()
        self._session.mount("https://", DeadlineAdapter(max_retries=0))
        self._session.mount("http://", DeadlineAdapter(max_retries=0))
        self._session.auth = lambda request: request  # never ~/.netrc credentials instead of ours
        self._deadline = max(deadline, sum(timeout))  # the whole login, however slowly IAM answers
        self.logins = 0

    def headers(self, method: str, url: str, project_id: str, body: bytes = b"") -> dict[str, str]:
        return {"X-Auth-Token": self.token(project_id)}

    def token(self, project_id: str) -> str:
        with self._lock:
            cached = self._cache.get(project_id)
            if cached and time.monotonic() < cached[1]:
                return cached[0]
            token, lifetime = self._login(project_id)
            margin = min(300.0, lifetime / 10)
            self._cache[project_id] = (token, time.monotonic() + lifetime - margin)
            return token

    def refresh(self, project_id: str, rejected: Mapping[str, str]) -> bool:
        with self._lock:
            cached = self._cache.get(project_id)
            if cached and cached[0] == rejected.get("X-Auth-Token"):
                del self._cache[project_id]
        return True

    def describe(self) -> str:
        return f"IAM password login as {self.user!r} (domain {self.domain!r}) at {self.iam_endpoint}"

    def __repr__(self) -> str:
        return f"IamPassword(iam_endpoint={self.iam_endpoint!r}, user={self.user!r}, password=***)"

    def _login(self, project_id: str) -> tuple[str, float]:
        """POST /v3/auth/tokens; returns (token, seconds until it expires)."""
        url = f"{self.iam_endpoint}/v3/auth/tokens"
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.user, "password": self._password, "domain": {"name": self.domain}}}},
            "scope": {"project": {"id": project_id}},
        }}
        for attempt in range(self._retry.max_retries + 1):
            watch = None
            try:
                with deadline(self._deadline) as watch:
                    resp = self._session.post(url, json=body, timeout=self._timeout, verify=self._verify,
                                              allow_redirects=False)
                if watch.expired:  # cut off: what arrived may look complete, but is not
                    raise requests.exceptions.ConnectionError("deadline")
            except requests.exceptions.SSLError:
                raise EndpointError(f"TLS verification failed for the IAM endpoint {self.iam_endpoint}") from None
            except requests.exceptions.RequestException as exc:
                if watch is not None and watch.expired:
                    raise EndpointError(f"the IAM endpoint {self.iam_endpoint} sent no complete answer within "
                                        f"{self._deadline:g} s") from None
                if attempt < self._retry.max_retries:
                    time.sleep(self._retry.wait(attempt + 1))
                    continue
                raise EndpointError(f"cannot reach the IAM endpoint {self.iam_endpoint} ({type(exc).__name__}); "
                                    "check MODELARTS_IAM_ENDPOINT") from None
            if resp.status_code in RETRYABLE_STATUSES and attempt < self._retry.max_retries:
                time.sleep(self._retry.wait(attempt + 1))
                continue
            break
        self.logins += 1
        return self._read_login(resp, project_id)

    def _read_login(self, resp: requests.Response, project_id: str) -> tuple[str, float]:
        token = resp.headers.get("X-Subject-Token")
        if resp.status_code in (200, 201) and token:
            return token, _lifetime(resp)
        if resp.status_code in (401, 403):
            raise AuthError(f"IAM refused the login of user {self.user!r} in domain {self.domain!r} for project "
                            f"{project_id} (HTTP {resp.status_code}): check MODELARTS_IAM_USER, "
                            "MODELARTS_IAM_PASSWORD and MODELARTS_IAM_DOMAIN")
        if 300 <= resp.status_code < 400:
            raise EndpointError(f"the IAM endpoint {self.iam_endpoint} redirects (HTTP {resp.status_code}); "
                                "set MODELARTS_IAM_ENDPOINT to the final address")
        raise EndpointError(f"IAM login failed at {self.iam_endpoint} (HTTP {resp.status_code}"
                            f"{': ' + _iam_message(resp) if _iam_message(resp) else ''})")


def _lifetime(resp: requests.Response) -> float:
    """Seconds until the token's expires_at; 24 h (the documented validity) if the body says nothing usable."""
    try:
        expires = resp.json()["token"]["expires_at"]
        when = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (ValueError, KeyError, TypeError, AttributeError):
        return 24 * 3600.0


def _iam_message(resp: requests.Response) -> str:
    try:
        error = resp.json().get("error", {})
        return str(error.get("message", ""))[:200]
    except (ValueError, AttributeError):
        return ""


# -- from the environment ----------------------------------------------------------
_MODELARTS_HOST = re.compile(r"^modelarts\.(?P<rest>[a-z0-9-]+\..+)$")


def iam_endpoint_for(endpoint: str) -> str | None:
    """https://modelarts.cn-north-4.myhuaweicloud.com -> https://iam.cn-north-4.myhuaweicloud.com"""
    parts = urlsplit(endpoint)
    match = _MODELARTS_HOST.match(parts.hostname or "")
    return f"{parts.scheme}://iam.{match['rest']}" if match else None


def auth_from_env(endpoint: str, env: Mapping[str, str] | None = None, *, verify: bool = True,
                  timeout: tuple[float, float] = (5.0, 30.0), deadline: float = 60.0):
    """The auth object for the first complete set of credentials in the environment."""
    env = os.environ if env is None else env
    token = env.get("MODELARTS_TOKEN", "").strip()
    if token:
        return StaticToken(token)
    ak, sk = env.get("HUAWEICLOUD_SDK_AK", "").strip(), env.get("HUAWEICLOUD_SDK_SK", "").strip()
    if ak or sk:
        if not (ak and sk):
            raise CredentialsError("set both HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK (only one is set)")
        return AkSk(ak, sk, env.get("HUAWEICLOUD_SDK_SECURITY_TOKEN", "").strip() or None)
    user, password = env.get("MODELARTS_IAM_USER", "").strip(), env.get("MODELARTS_IAM_PASSWORD", "")
    if user or password:
        if not (user and password):
            raise CredentialsError("set both MODELARTS_IAM_USER and MODELARTS_IAM_PASSWORD (only one is set)")
        iam = env.get("MODELARTS_IAM_ENDPOINT", "").strip() or iam_endpoint_for(endpoint)
        if not iam:
            raise CredentialsError(f"cannot derive the IAM endpoint from {endpoint}; set MODELARTS_IAM_ENDPOINT")
        return IamPassword(iam, user, password, env.get("MODELARTS_IAM_DOMAIN", "").strip() or None,
                           timeout=timeout, verify=verify, deadline=deadline)
    raise CredentialsError(
        "no credentials in the environment: set MODELARTS_TOKEN, or HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, "
        "or MODELARTS_IAM_USER and MODELARTS_IAM_PASSWORD (+ MODELARTS_IAM_DOMAIN)"
    )
