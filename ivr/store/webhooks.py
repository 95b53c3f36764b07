"""Webhook requests seen before: Twilio's retries get the first answer, and change nothing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, delete, select, update

from ivr.store.database import Database, Prepared
from ivr.store.models import WebhookAnswer, utcnow

# Twilio retries within seconds: a day outlasts any retry and keeps the table small.
KEEP_ANSWERS = timedelta(days=1)
# Old answers are swept by about one claim in this many, so most claims are one statement.
SWEEP_EVERY = 200

ANSWERS = WebhookAnswer.__table__


def claim_statement(insert):
    """The upsert that claims a token, returning it only to the one request that wins
    (bind parameters token, path, at); `insert` is the dialect's (ON CONFLICT)."""
    return (
        insert(ANSWERS)
        .values(token=bindparam("token"), path=bindparam("path"), answer=None, at=bindparam("at"))
        .on_conflict_do_nothing(index_elements=[ANSWERS.c.token])
        .returning(ANSWERS.c.token)
    )


_CLAIM = Prepared(claim_statement)
# The answer kept for a token (bind parameter token).
ANSWER_OF = select(ANSWERS.c.answer).where(ANSWERS.c.token == bindparam("token"))
_ANSWER_OF = Prepared(ANSWER_OF)


def keep_statement():
    """The UPDATE that keeps a claimed request's answer (bind parameters the_token, answer)."""
    return (
        update(ANSWERS)
        .where(ANSWERS.c.token == bindparam("the_token"))
        .values(answer=bindparam("answer"))
    )


_KEEP = Prepared(keep_statement())
_SWEEP = Prepared(delete(ANSWERS).where(ANSWERS.c.at < bindparam("before")))


@dataclass(frozen=True)
class SeenBefore:
    """A request whose token was claimed already: its answer, or None while it is being made."""

    answer: str | None


@dataclass(frozen=True)
class KeptAnswer:
    """The answer to a claimed request, kept in the same transaction as the change it reports.

    One commit instead of two on the webhook path: the retry that finds the answer also finds
    the change (a send reserved, a join recorded), never one without the other.
    """

    token: str
    answer: str


def keep(connection, kept: KeptAnswer | None) -> None:
    """Keep `kept` inside the caller's transaction (nothing if the request claimed no token)."""
    if kept is not None:
        _KEEP.run(connection, {"the_token": kept.token, "answer": kept.answer})


def sweep_now_and_then(connection, now) -> None:
    """Delete answers too old for any retry, about one claim in SWEEP_EVERY."""
    if random.randrange(SWEEP_EVERY) == 0:
        _SWEEP.run(connection, {"before": now - KEEP_ANSWERS})


def claim(connection, token: str, path: str) -> SeenBefore | None:
    """Claim `token` inside the caller's connection (see `WebhookStore.claim_webhook`)."""
    now = utcnow()
    sweep_now_and_then(connection, now)
    if _CLAIM.run(connection, {"token": token, "path": path, "at": now}).first() is not None:
        return None
    return SeenBefore(_ANSWER_OF.run(connection, {"token": token}).scalar())


class WebhookStore(Database):
    """Claims of webhook requests by idempotency token, and the answers given to them."""

    def claim_webhook(self, token: str, path: str) -> SeenBefore | None:
        """Claim `token` for this request; return None if it is new, else what it got before.

        One insert that only one request (on any instance) can win, committed at once; the
        others read the winner's answer.
        """
        with self._writing_alone() as connection:
            return claim(connection, token, path)

    def answer_of(self, token: str) -> str | None:
        """Return the answer kept for `token`, if it has one yet."""
        with self._reading() as connection:
            return _ANSWER_OF.run(connection, {"token": token}).scalar()

    def keep_answer(self, token: str, answer: str) -> None:
        """Keep the answer given to the request that claimed `token`, for its retries."""
        with self._writing_alone() as connection:
            keep(connection, KeptAnswer(token, answer))
