"""What every console response shares: security headers and the error page."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

# Pages only load what the console itself serves: no inline script, no other origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
ERROR_TITLES = {
    400: "That did not work",
    404: "Not found",
    413: "That file is too large",
    429: "Too many attempts",
}


def set_up(blueprint: Blueprint) -> None:
    """Give a console blueprint the shared headers and error page."""
    blueprint.after_request(_security_headers)
    blueprint.register_error_handler(HTTPException, _error_page)


def _security_headers(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "admin.static":
        # Pages show phone numbers and call records: keep them out of shared caches.
        response.headers["Cache-Control"] = "no-store"
    return response


def _error_page(error: HTTPException):
    if isinstance(error, CSRFError):
        message = "The form had expired or was not sent from this console. Nothing changed."
    elif error.code == 429:
        message = (
            "Too many sign-in attempts from here or for this number. Wait a while and try again."
        )
    else:
        message = error.description
    title = ERROR_TITLES.get(error.code or 500, error.name)
    return render_template("admin/error.html", title=title, message=message), error.code
