"""Fixtures for the case tests: a fresh SQLite database per test, alert factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tollguard.cases.db import open_engine
from tollguard.detect.alert import Alert, Evidence

T0 = datetime(2011, 6, 11, 22, 0, tzinfo=UTC)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cases.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = open_engine(db_url)
    yield eng
    eng.dispose()


MakeAlert = Callable[..., Alert]


@pytest.fixture
def make_alert() -> MakeAlert:
    def make(**kw: Any) -> Alert:
        minutes = kw.pop("minutes", 10)
        base: dict[str, Any] = {
            "id": "a1",
            "detector": "destination",
            "severity": "warning",
            "account": "acme",
            "subject": "TL",
            "subject_kind": "country",
            "started_at": T0,
            "detected_at": T0 + timedelta(minutes=minutes),
            "records": 3,
            "cost": Decimal("12.3400"),
            "currency": "EUR",
            "explanation": {
                "parameter": "country",
                "value": "TL",
                "expected": "NL, BE",
                "why": "first calls ever to Timor-Leste",
            },
            "evidence": Evidence(["r1", "r2", "r3"], 3),
        }
        base.update(kw)
        return Alert(**base)

    return make
