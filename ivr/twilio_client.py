"""The one place a twilio.rest.Client is built: timeouts, keep-alive and TWILIO_API_URL."""

from __future__ import annotations

import re

from requests.adapters import HTTPAdapter
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

_TWILIO_HOST = re.compile(r"^https://([a-z0-9-]+)\.twilio\.com(?=/)")
# Connections kept open to Twilio per process. A process's request threads (gunicorn's, 8 by
# default) and its code-sender threads (16) share one client; the twilio library keeps CPUs + 4,
# so at the top of the hour most finished requests closed their connection and the next one
# paid a new TCP and TLS handshake (and urllib3 logged "Connection pool is full").
POOL_SIZE = 32


class RedirectingHttpClient(TwilioHttpClient):
    """Send every request for https://<product>.twilio.com/X to {base}/<product>/X instead."""

    def __init__(self, base_url: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

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
    adapter = HTTPAdapter(pool_maxsize=POOL_SIZE)
    # TWILIO_API_URL may be plain http (a local fake): its connections are kept alive too.
    for scheme in ("https://", "http://"):
        http_client.session.mount(scheme, adapter)
    return Client(account_sid, auth_token, http_client=http_client)
