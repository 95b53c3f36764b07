"""The one place a twilio.rest.Client is built: timeouts, keep-alive and TWILIO_API_URL."""

from __future__ import annotations

import re

from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

_TWILIO_HOST = re.compile(r"^https://([a-z0-9-]+)\.twilio\.com(?=/)")


class RedirectingHttpClient(TwilioHttpClient):
    """Send every request for https://<product>.twilio.com/X to {base}/<product>/X instead."""

    def __init__(self, base_url: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        # The session only keeps connections alive for schemes it has an adapter for.
        if self.session is not None:
            self.session.mount("http://", self.session.get_adapter("https://"))

    def request(self, method: str, url: str, *args, **kwargs):
        return super().request(method, rewrite_url(url, self.base_url), *args, **kwargs)


def rewrite_url(url: str, base_url: str) -> str:
    """Map a Twilio product URL onto `base_url`, e.g. .../verify/v2/Services/VA.../Verifications."""
    return _TWILIO_HOST.sub(lambda match: f"{base_url}/{match.group(1)}", url, count=1)


def build_client(
    account_sid: str, auth_token: str, timeout: float, api_url: str | None = None
) -> Client:
    """Return a client whose calls give up after `timeout` seconds and reuse connections."""
    if api_url:
        http_client = RedirectingHttpClient(api_url, timeout=timeout)
    else:
        http_client = TwilioHttpClient(timeout=timeout)
    return Client(account_sid, auth_token, http_client=http_client)
