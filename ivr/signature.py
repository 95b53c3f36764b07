"""X-Twilio-Signature: every webhook request is Twilio's, or it is refused."""

from __future__ import annotations

import hmac
from urllib.parse import urlparse

from flask import Request
from twilio.request_validator import RequestValidator, add_port, remove_port


def signed_url(request: Request, public_base_url: str | None) -> str:
    """Return the URL Twilio signed: PUBLIC_BASE_URL + path + query behind a proxy."""
    if not public_base_url:
        return request.url
    query = request.query_string.decode("latin-1")
    return f"{public_base_url}{request.path}" + (f"?{query}" if query else "")


def is_signed_by_twilio(request: Request, token: str, public_base_url: str | None) -> bool:
    """Check the signature against the URL with and without its port, as Twilio's library does.

    `RequestValidator.validate` always computes both signatures. Twilio signs the URL as the
    number's webhook was set, and asks for that same host and port, so the URL as it came is
    compared first and the other spelling only if that fails: half the HMAC work of a webhook.
    The form goes in as `validate` takes it, so what passes is the same.
    """
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    validator = RequestValidator(token)
    form = _Fields(request.form.lists())
    expected = signature.encode()
    url = urlparse(signed_url(request, public_base_url))
    if _signs(validator, url.geturl(), form, expected):
        return True
    try:
        other_spelling = remove_port(url) if url.port else add_port(url)
    except ValueError:  # a port that is no number (werkzeug drops such a Host): not Twilio's
        return False
    return _signs(validator, other_spelling, form, expected)


def _signs(validator: RequestValidator, url: str, form, expected: bytes) -> bool:
    computed = validator.compute_signature(url, form).encode()
    return hmac.compare_digest(computed, expected)


class _Fields(dict):
    """The form as {name: [values]}, which `compute_signature` reads through `getall`.

    Given werkzeug's MultiDict, which has `getlist` but no `getall`, the validator raises and
    catches an AttributeError for every field before it finds `getlist` (about half its work
    for a webhook's twenty-odd fields). The same names and values go in, so what passes is the
    same.
    """

    getall = dict.__getitem__
