"""Live detection on ingest: new records through the detection engine, alerts into cases.

``LiveDetection`` is the ``Ingestor``'s ``on_new`` hook. It only ever sees records that
were new in their commit, so a resent record (a NATS redelivery, a re-read file, a
switch posting the same batch twice) never feeds the engine twice. Each record goes
through ``tollguard.detect.engine.Engine.process`` in event order (call end); the alerts
it returns (new, or escalated) are written to the JSONL file when one is given, then
filed into cases (``CaseService.ingest``, idempotent per alert id) in the same database.

Restart: the engine lives in memory. ``warm_up(days)`` replays the stored records of the
last ``days`` days (counted back from the newest stored call) through a fresh engine
before the first new record, so signatures, daily spend and open patterns continue
instead of starting empty. Alerts the replay produces are not filed again: they were
filed when the records first arrived. What is not recovered: alerts of a batch whose
records were committed just before a crash and not yet filed, and patterns older than
the replay window.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING

import polars as pl
from sqlalchemy import Engine

from tollguard.detect.alert import alerts_jsonl
from tollguard.policy import Policy
from tollguard.store.records import latest_start, load_rated_frames

if TYPE_CHECKING:
    from tollguard.cases.service import CaseService
    from tollguard.detect.alert import Alert
    from tollguard.detect.engine import Engine as DetectionEngine

log = logging.getLogger(__name__)


@dataclass
class LiveStats:
    records: int = 0  # new records fed to the engine
    alerts: int = 0  # alerts returned by the engine (new or escalated)
    cases_opened: int = 0
    warmup_records: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "records": self.records,
            "alerts": self.alerts,
            "cases_opened": self.cases_opened,
            "warmup_records": self.warmup_records,
        }


class LiveDetection:
    """Feeds new records to the detection engine; files and writes its alerts.

    Thread-safe: records of concurrent commits (the HTTP API) go through the engine one
    batch at a time."""

    def __init__(
        self,
        store: Engine,
        policy: Policy,
        *,
        alerts_out: Path | None = None,
        detection: DetectionEngine | None = None,
        cases: CaseService | None = None,
    ) -> None:
        from tollguard.cases.service import CaseService
        from tollguard.detect.engine import Engine as DetectionEngine

        self.store = store
        self.policy = policy
        self.engine = detection if detection is not None else DetectionEngine(policy)
        self.cases = cases if cases is not None else CaseService(store, policy=policy)
        self.stats = LiveStats()
        self._out: IO[bytes] | None = alerts_out.open("ab") if alerts_out is not None else None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> LiveDetection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the on_new hook -------------------------------------------------------
    def __call__(self, frame: pl.DataFrame) -> None:
        self.process(frame)

    def process(self, frame: pl.DataFrame) -> list[Alert]:
        """Run new rated records through the engine; file and write the alerts."""
        from tollguard.cdr.records import records_from_frame

        with self._lock:
            alerts: list[Alert] = []
            for record in records_from_frame(frame):
                alerts.extend(self.engine.process(record))
            self.stats.records += frame.height
            self.stats.alerts += len(alerts)
            if alerts:
                self._write(alerts)
                self._file(alerts)
            return alerts

    def _write(self, alerts: list[Alert]) -> None:
        if self._out is None:
            return
        self._out.write(alerts_jsonl(alerts))
        self._out.flush()

    def _file(self, alerts: list[Alert]) -> None:
        results = self.cases.ingest_batch(alerts)  # one commit per batch of records
        self.stats.cases_opened += sum(1 for r in results if r.outcome == "created")

    # -- restart ---------------------------------------------------------------
    def warm_up(self, days: float) -> int:
        """Replay the stored records of the last ``days`` days (before the newest stored
        call) through the engine, filing nothing. Returns the number replayed."""
        from tollguard.cdr.records import records_from_frame

        if days <= 0:
            return 0
        newest = latest_start(self.store)
        if newest is None:
            return 0
        since = newest - timedelta(days=days)
        n = 0
        with self._lock:
            for frame in load_rated_frames(self.store, since):
                for record in records_from_frame(frame):
                    self.engine.process(record)
                n += frame.height
            self.stats.warmup_records += n
        log.info("detection warmed up with %d stored records since %s", n, since.isoformat())
        return n
