"""One HTTP request to a task's own port, judged the way Aurora's HttpSignaler judges it.

Used by the HTTP health check (GET) and the graceful-stop lifecycle (POST). The request is made
in-process with `http.client` (no fork per check) and bounded by a timeout: the argument, else
``$AURORA_HTTP_SIGNALER_TIMEOUT_SECS``, else 1 s.

Fix (deliberate): Aurora lower-cased only the response body, so an ``expected_response`` with
capitals could never match; here both sides are compared case-insensitively.
"""

from __future__ import annotations

import http.client
import os
from dataclasses import dataclass

DEFAULT_TIMEOUT_SECS = 1.0
TIMEOUT_ENV = 'AURORA_HTTP_SIGNALER_TIMEOUT_SECS'


@dataclass(frozen=True)
class HttpResponse:
    """What came back: the stripped, lower-cased body ('' for HTTP error statuses) and the code."""

    body: str
    code: int


class HttpSignalError(Exception):
    """The request did not complete (refused, reset, timed out); ``str()`` says which URL and why."""


def _default_timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_SECS))
    except ValueError:
        return DEFAULT_TIMEOUT_SECS


def _abbreviate(value: str) -> str:
    return value[:7] + '...' if len(value) >= 10 else value


class HttpSignaler:
    """Requests ``http://<host>:<port><endpoint>``; a completed request of any status is "handled"."""

    def __init__(self, port: int, host: str = 'localhost', timeout_secs: float | None = None) -> None:
        self.port = port
        self.host = host
        self.timeout_secs = _default_timeout() if timeout_secs is None else timeout_secs

    def url(self, endpoint: str) -> str:
        return 'http://%s:%d%s' % (self.host, self.port, endpoint)

    def request(self, endpoint: str, method: str = 'GET') -> HttpResponse:
        """Make the request; `HttpSignalError` if it did not complete within the timeout."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_secs)
        try:
            connection.request(method, endpoint, body=b'' if method == 'POST' else None)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            reason = str(e) or type(e).__name__
            raise HttpSignalError('Failed to signal %s: %s' % (self.url(endpoint), reason)) from None
        finally:
            connection.close()
        if response.status >= 400:
            return HttpResponse('', response.status)
        return HttpResponse(body.decode('utf-8', 'replace').strip().lower(), response.status)

    def check(self, endpoint: str, expected_response: str | None = None,
              expected_response_code: int | None = None, method: str = 'GET') -> tuple[bool, str | None]:
        """(passed, reason): the body must match a truthy `expected_response`, else the code a
        truthy `expected_response_code`; with neither, any completed request passes."""
        try:
            response = self.request(endpoint, method)
        except HttpSignalError as e:
            return False, str(e)
        if expected_response and response.body != expected_response.strip().lower():
            return False, 'Response differs from expected response (expected "%s", got "%s")' % (
                _abbreviate(expected_response), _abbreviate(response.body))
        if expected_response_code and response.code != expected_response_code:
            return False, 'Response code differs from expected response (expected %d, got %d)' % (
                expected_response_code, response.code)
        return True, None
