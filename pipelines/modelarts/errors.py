"""Errors a user of the client can act on.

Each message is one line that says what is wrong and what to check, and is safe to
print: no token, password, secret key or signature ever goes into one (messages are
built from our own words, status codes, API error codes and URLs without credentials).
"""
from __future__ import annotations


class ModelArtsError(Exception):
    """Base class; `str(exc)` is the one line to show."""


class CredentialsError(ModelArtsError):
    """Credentials are missing or half-configured in the environment."""


class EndpointError(ModelArtsError):
    """The endpoint cannot be reached, is not the ModelArts v1 API, or redirects elsewhere."""


class AuthError(ModelArtsError):
    """The API or IAM rejected the credentials (HTTP 401/403)."""


class ProjectError(ModelArtsError):
    """The project id is unknown to the endpoint or not covered by the credentials."""


class ApiError(ModelArtsError):
    """Any other error answer from the API (an `is_success: false` body, a 4xx, 5xx after retries)."""

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class SyncError(ModelArtsError):
    """One or more projects of a sync failed; `report` holds what was done anyway."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


FATAL_ERRORS = (CredentialsError, EndpointError, AuthError, ProjectError)  # stop the project: nothing else would work
