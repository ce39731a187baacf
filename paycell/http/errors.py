"""The one place where failures become HTTP answers: `{"error": {"code", "message", "field"?}}`;
a rejected rule set (RuleSetInvalid) adds `problems`: every one with its line and column.

Typed domain errors (paycell.errors) carry their own code and status; aiohttp's own HTTP
exceptions (no route, wrong method, body too large) get a code here; a store that cannot be
reached (Postgres down, pool exhausted) is a 503 the client may retry; anything else is a bug:
logged with its traceback and answered with a bare 500 that reveals nothing. A typed error with a
`retry_after_s` (the process is overloaded, not ready) is a load answer, not a bug: it keeps its
code and message and carries Retry-After.
"""
from __future__ import annotations

import asyncio

import asyncpg
import dramatiq.errors
import msgspec
import structlog
from aiohttp import web

from paycell.errors import PaycellError, RateLimited, RequestTimeout, RuleSetInvalid, Unauthenticated
from paycell.http.state import REQUEST_ID

log = structlog.get_logger("paycell.http")

# aiohttp's HTTPException status -> our code. Others fall back to "http_<status>".
HTTP_CODES = {
    400: "invalid_request",
    404: "route_not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
WWW_AUTHENTICATE = 'Bearer realm="paycell"'
# Failures of the store, not of the request: the same request may succeed in a moment.
UNAVAILABLE = (OSError, asyncio.TimeoutError, dramatiq.errors.BrokerConnectionError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
               asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError, asyncpg.QueryCanceledError)
RETRY_AFTER_S = 1


class UnsupportedMediaType(PaycellError):
    code, http_status = "unsupported_media_type", 415


class ProblemView(msgspec.Struct):
    """One problem of a rejected rule set: where (1-based line and column) and what."""
    line: int
    column: int
    message: str


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    field: str | None = None
    problems: list[ProblemView] | None = None  # rules_invalid, rules_syntax: every problem found


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


def json_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A response whose body is already JSON-encoded."""
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None, problems: list[ProblemView] | None = None) -> web.Response:
    return json_response(msgspec.json.encode(ErrorBody(ErrorDetail(code, message, field, problems))), status, headers)


def status_for(exc: BaseException) -> int:
    """The status `error_middleware` answers `exc` with (the request log uses it too)."""
    if isinstance(exc, PaycellError):
        return exc.http_status
    if isinstance(exc, web.HTTPException):
        return exc.status
    if isinstance(exc, UNAVAILABLE):
        return 503
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PaycellError as exc:
        if exc.http_status >= 500 and getattr(exc, "retry_after_s", None) is None:
            log.error("request.failed", request_id=request.get(REQUEST_ID), code=exc.code, exc_info=True)
            return error_response(exc.http_status, exc.code, "internal error")
        problems = ([ProblemView(p.line, p.column, p.message) for p in exc.problems]
                    if isinstance(exc, RuleSetInvalid) else None)
        response = error_response(exc.http_status, exc.code, exc.message, exc.field, _headers_for(exc), problems)
        if isinstance(exc, RequestTimeout):
            response.force_close()  # the rest of a trickled body is not worth waiting for
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = HTTP_CODES.get(exc.status, f"http_{exc.status}")
        return error_response(exc.status, code, _http_message(exc, request), None, headers)
    except UNAVAILABLE as exc:
        log.error("request.store_unavailable", request_id=request.get(REQUEST_ID), error=repr(exc))
        return error_response(503, "service_unavailable", "paycell cannot reach its store; retry shortly",
                              headers={"Retry-After": str(RETRY_AFTER_S)})
    except Exception:
        log.error("request.crashed", request_id=request.get(REQUEST_ID), method=request.method,
                  path=request.path, exc_info=True)
        return error_response(500, "internal_error", "internal error")


def _headers_for(exc: PaycellError) -> dict[str, str] | None:
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": WWW_AUTHENTICATE}
    if isinstance(exc, RateLimited):
        return rate_limit_headers(exc)
    if getattr(exc, "retry_after_s", None) is not None:
        return {"Retry-After": str(exc.retry_after_s)}
    return None


def rate_limit_headers(exc: RateLimited) -> dict[str, str]:
    """Retry-After, and the policy that refused with its state in the RateLimit-Policy / RateLimit
    pair of draft-ietf-httpapi-ratelimit-headers-11 (structured fields: quota q, window w in
    seconds, remaining r, reset t in seconds)."""
    return {"Retry-After": str(exc.retry_after_s),
            "RateLimit-Policy": f'"{exc.policy}";q={exc.quota};w={exc.window_s}',
            "RateLimit": f'"{exc.policy}";r=0;t={exc.retry_after_s}'}


def _http_message(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"no route for {request.path[:200]}"
    if exc.status == 405:
        return f"{request.method} is not allowed here; allowed: {exc.headers.get('Allow', '')}"
    if exc.status == 413:
        return f"request body exceeds {request.client_max_size} bytes"
    return exc.reason
