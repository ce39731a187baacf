"""The operator console (issue 11): server-rendered pages under /console for users with the
operator role, mounted by paycell/http/app.py as a sub-application.

Pages (paycell/console/views): payments search with each payment's event timeline, its reversals
and the form that reverses it (paycell.http.reversals.reverse_and_send, the API's own); queues and
dead letters with replay; the review queue (claim, approve, decline with a note); schedules;
reconciliation runs and their breaks; breaker states per connector; payments per minute by status
(a server-rendered SVG chart). Every page calls the functions the operator API and the CLI call
(paycell.reviews, paycell.reversals, paycell.dlq, paycell.queues, paycell.psp.breakers,
paycell.store ...): the console holds no business logic of its own.

Security, each in one module:
- session.py: an operator signs in with an operator-role token, verified exactly as the API
  verifies a bearer token; a server-side session (random secret, only its hash stored, expiry,
  sign-out) is carried in an HttpOnly, SameSite=Strict cookie, Secure outside development.
- csrf.py: every form carries a CSRF token, checked in constant time on every POST before the
  handler runs (403 csrf_rejected, nothing done).
- headers.py: a strict Content-Security-Policy (no script at all, styles only from
  /console/static), nosniff, no referrer, no-store, no framing, on every console answer; HTML
  error pages instead of the API's JSON.
- Jinja2 with autoescape on for every template: whatever a payment, an event or a note holds is
  shown as text.
"""
from paycell.console.app import create_console

__all__ = ["create_console"]
