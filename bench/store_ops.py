"""CPU per store operation on the webhook path, each run 1000 times in a row on one thread.

    python bench/store_ops.py                                        # a SQLite file
    python bench/store_ops.py postgresql://postgres@127.0.0.1/scratch  # DROPS its tables

What one call to the line asks of the database, in isolation: these are lower bounds (a busy
worker interleaves them with everything else), for comparing one version of the store with the
next on the same machine in the same minute.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.store import (  # noqa: E402
    Base,
    CallerLookup,
    CallNote,
    KeptAnswer,
    Outcome,
    ParticipantRow,
    Role,
    Store,
    StoredCode,
    utcnow,
)

CALLERS = 2000
REPEATS = 1000
LINE = "+18005550100"


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        url = argv[0] if argv else f"sqlite:///{folder}/ops.sqlite3"
        store = Store(url)
        if not url.startswith("sqlite"):
            Base.metadata.drop_all(store.engine)
            with store.engine.begin() as connection:
                connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        store.upgrade_schema()
        phones = [f"+1800555{n:04d}" for n in range(CALLERS)]
        store.import_participants(
            [ParticipantRow(p, f"Caller {n}", Role.PARTICIPANT) for n, p in enumerate(phones)]
        )

        def note(n: int) -> CallNote:
            return CallNote(f"CA{n:032d}", phones[n % CALLERS], "Caller", "main")

        def claim_and_find(n: int, path: str, for_a_check: bool):
            # /gather reads the live labels and claims its code check with the caller.
            checks = 10**9 if for_a_check else None
            lookup = CallerLookup(
                phones[n % CALLERS], LINE, f"CA{n:032d}", utcnow(), for_a_check, checks
            )
            return store.claim_webhook_finding(uuid.uuid4().hex, path, lookup)

        operations = {
            "claim webhook + find caller (/voice)": lambda n: claim_and_find(n, "/voice", False),
            "reserve send + log + keep answer + code (/voice)": lambda n: store.reserve_send(
                phones[n % CALLERS],
                5,
                note(n),
                answer=KeptAnswer(uuid.uuid4().hex, "<Response/>"),
                code=StoredCode("0" * 64, utcnow()),
            ),
            "send done (code sender, alone)": lambda n: store.sends_done([n]),
            "claim webhook + find caller, labels, check (/gather)": lambda n: claim_and_find(
                n, "/gather", True
            ),
            "record join + keep answer (/gather)": lambda n: store.record_join(
                Outcome.JOINED_PARTICIPANT, note(n), KeptAnswer(uuid.uuid4().hex, "<Response/>")
            ),
        }
        total = 0.0
        for label, operation in operations.items():
            for n in range(50):
                operation(n)
            started = time.thread_time()
            for n in range(REPEATS):
                operation(n)
            each = (time.thread_time() - started) / REPEATS
            total += each
            print(f"{label:52} {1e6 * each:6.0f} us")
        print(f"{'one call (each once)':52} {1e6 * total:6.0f} us")
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
