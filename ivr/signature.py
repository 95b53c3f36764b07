"""X-Twilio-Signature: every webhook request is Twilio's, or it is refused."""

from __future__ import annotations

from flask import Request
from twilio.request_validator import RequestValidator


def signed_url(request: Request, public_base_url: str | None) -> str:
    """Return the URL Twilio signed: PUBLIC_BASE_URL + path + query behind a proxy."""
    if not public_base_url:
        return request.url
    query = request.query_string.decode("latin-1")
    return f"{public_base_url}{request.path}" + (f"?{query}" if query else "")


def is_signed_by_twilio(request: Request, token: str, public_base_url: str | None) -> bool:
    """Check the signature against the URL with and without its port, as Twilio's library does."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    validator = RequestValidator(token)
    return validator.validate(signed_url(request, public_base_url), request.form, signature)
