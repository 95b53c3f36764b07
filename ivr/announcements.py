"""Names announced: the others in a room's conference hear "Blathers has joined." / "... left."

Twilio's conference status callback tells the line that a caller joined or left; the line then
asks Twilio, on a sender thread (ivr.sending) so the callback answers at once, to play an
announcement into the conference: the REST update's AnnounceUrl points at our signed
/conference/announce, which says the name in the room's language. A moderator who joins also
hears, on their own, how many callers are in already. A failed announcement is logged and
counted, never spoken: the meeting goes on without it.

In local mode there is no Twilio: `LocalAnnouncements` keeps the requests, as the console outbox
keeps codes, and the dev phones play them the way Twilio would, by fetching our signed TwiML.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlencode

from twilio.rest import Client

from ivr.logs import call_context
from ivr.metrics import NO_METRICS, Metrics
from ivr.store import Store
from ivr.verification import ProviderError, twilio_faults

log = logging.getLogger(__name__)

# ivr_provider_requests_total's operation for both kinds of announcement request.
OPERATION = "conference_announce"
# What /conference/announce can say: the `event` of its URL.
Said = Literal["joined", "left", "waiting"]
SAYINGS: tuple[Said, ...] = ("joined", "left", "waiting")
# Twilio's SIDs: two letters and 32 hex digits. They go into REST paths and our own URLs.
CONFERENCE_SID = re.compile(r"CF[0-9a-fA-F]{32}")
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")


class Announcer(Protocol):
    def to_conference(self, conference_sid: str, url: str) -> None:
        """Have everyone in the conference hear the TwiML at `url`; raise ProviderError."""

    def to_participant(self, conference_sid: str, call_sid: str, url: str) -> None:
        """Have one caller in the conference hear the TwiML at `url`; raise ProviderError."""


class TwilioAnnouncer:
    """Announcements through Twilio's REST API: an AnnounceUrl on the conference or participant."""

    def __init__(self, client: Client, metrics: Metrics = NO_METRICS) -> None:
        self._client = client
        self._metrics = metrics

    def to_conference(self, conference_sid: str, url: str) -> None:
        with twilio_faults("conference announcement", OPERATION, self._metrics):
            self._client.conferences(conference_sid).update(
                announce_url=url, announce_method="POST"
            )

    def to_participant(self, conference_sid: str, call_sid: str, url: str) -> None:
        with twilio_faults("participant announcement", OPERATION, self._metrics):
            self._client.conferences(conference_sid).participants(call_sid).update(
                announce_url=url, announce_method="POST"
            )


@dataclass(frozen=True)
class Announcement:
    conference_sid: str
    call_sid: str | None  # None: the whole conference hears it
    url: str


class LocalAnnouncements:
    """Local mode's Twilio: keep each announcement until a dev phone in that conference plays it."""

    def __init__(self, keep: int = 200) -> None:
        self._pending: deque[Announcement] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def to_conference(self, conference_sid: str, url: str) -> None:
        with self._lock:
            self._pending.append(Announcement(conference_sid, None, url))

    def to_participant(self, conference_sid: str, call_sid: str, url: str) -> None:
        with self._lock:
            self._pending.append(Announcement(conference_sid, call_sid, url))

    def take(self, conference_sids: Iterable[str]) -> list[Announcement]:
        """Remove and return the announcements for these conferences, oldest first."""
        wanted = set(conference_sids)
        with self._lock:
            taken = [a for a in self._pending if a.conference_sid in wanted]
            kept = [a for a in self._pending if a.conference_sid not in wanted]
            self._pending.clear()
            self._pending.extend(kept)
        return taken


@dataclass(frozen=True)
class ConferenceNews:
    """A caller joined or left a conference, as Twilio's status callback said."""

    said: Literal["joined", "left"]
    conference_sid: str
    call_sid: str
    room: str | None
    announce_url: str  # /conference/announce as Twilio reaches it, without a query


class Announcements:
    """Decide who hears what when a caller joins or leaves, and ask the announcer to play it."""

    def __init__(self, store: Store, announcer: Announcer) -> None:
        self._store = store
        self.announcer = announcer

    def announce(self, news: ConferenceNews) -> None:
        """Announce a join or leave if the room wants it and someone is there to hear it.

        Runs on a sender thread. A failure is logged at WARNING (and counted by the announcer),
        never raised: nobody is waiting for it.
        """
        with call_context(news.call_sid, news.room):
            try:
                self._announce(news)
            except ProviderError as error:
                log.warning("announcement not played: %s", error)

    def _announce(self, news: ConferenceNews) -> None:
        caller = self._store.conference_news(news.call_sid, news.conference_sid)
        if caller is None or not caller.announce_names or caller.ending:
            return
        if news.said == "left" and caller.moderator:
            # The moderator's leaving ends the conference: there is no one to tell.
            return
        if news.said == "joined" and not caller.present:
            # Gone again before this was read (or Twilio's leave overtook the join).
            return
        # Each request on its own: a failed one does not keep the other from playing.
        if caller.others:
            _played(
                self.announcer.to_conference,
                news.conference_sid,
                announce_url(news.announce_url, news.said, news.call_sid),
            )
        if news.said == "joined" and caller.moderator:
            _played(
                self.announcer.to_participant,
                news.conference_sid,
                news.call_sid,
                announce_url(news.announce_url, "waiting", news.call_sid, caller.others),
            )


def _played(request, *args) -> None:
    """Ask the announcer for one announcement; a failure is logged, and the next one still goes."""
    try:
        request(*args)
    except ProviderError as error:
        log.warning("announcement not played: %s", error)


def announce_url(base: str, said: Said, call_sid: str, count: int | None = None) -> str:
    """Return our announcement URL: what to say, and whose call it is about (never a number)."""
    query = {"event": said, "call": call_sid}
    if count is not None:
        query["count"] = str(count)
    return f"{base}?{urlencode(query)}"
