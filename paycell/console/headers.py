"""What every console answer carries, and HTML error pages in place of the API's JSON ones.

The Content-Security-Policy allows no script at all and styles only from the console's own
static files (no inline style or script, so an injected tag would do nothing even if escaping
failed), images from itself, forms posting only to itself, no framing (clickjacking) and no
<base> rewriting.
"""
from __future__ import annotations

import structlog
from aiohttp import web

from paycell.console import pages
from paycell.errors import PaycellError
from paycell.http.errors import UNAVAILABLE

log = structlog.get_logger("paycell.console")

CSP = ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare of the console application: every answer, errors and files included."""
    response.headers.update(HEADERS)


def error_page(request: web.Request, status: int, code: str, message: str) -> web.Response:
    return pages.render(request, "error.html", {"code": code, "message": message, "status": status}, status=status)


@web.middleware
async def error_pages(request: web.Request, handler) -> web.StreamResponse:
    """Failures as HTML pages with the API's stable codes; nothing but a bug is a 500, and a bug's
    page says nothing about it (the log has the traceback)."""
    try:
        return await handler(request)
    except PaycellError as exc:
        if exc.http_status >= 500:
            log.error("console.failed", code=exc.code, path=request.path, exc_info=True)
            return error_page(request, exc.http_status, exc.code, "internal error")
        return error_page(request, exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_page(request, exc.status, f"http_{exc.status}", exc.reason)
    except UNAVAILABLE as exc:
        log.error("console.store_unavailable", path=request.path, error=repr(exc))
        response = error_page(request, 503, "service_unavailable", "paycell cannot reach its store; retry shortly")
        response.headers["Retry-After"] = "1"
        return response
    except Exception:
        log.error("console.crashed", method=request.method, path=request.path, exc_info=True)
        return error_page(request, 500, "internal_error", "internal error")
