"""High-risk destination list (IRSF-prone countries and number ranges).

The bundled list lives in ``data/high_risk.csv`` (columns ``id,kind,value,reason,
source`` and an optional ``enabled``). A site CSV with the same columns merges over
it: a row with an existing ``id`` replaces that entry, a new ``id`` adds one, and
``enabled=false`` (or ``kind=remove``) drops the entry with that ``id``.

Matching: the longest ``prefix`` entry that starts the E.164 digits wins; otherwise
the ``country`` entry of the number's country (ISO alpha-2, or "001").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, cast

import polars as pl

RiskKind = Literal["country", "prefix"]
_FALSE = {"false", "0", "no", "off", "n"}
_REQUIRED = ("id", "kind", "value", "reason", "source")


class RiskListError(ValueError):
    """A risk list CSV that cannot be used; the message names file and line."""


@dataclass(frozen=True, slots=True)
class RiskEntry:
    id: str
    kind: RiskKind
    value: str  # ISO alpha-2 / "001" for kind=country; E.164 digits without "+" for prefix
    reason: str
    source: str


class RiskList:
    """An ordered set of risk entries with a longest-prefix index."""

    def __init__(self, entries: Iterable[RiskEntry] = ()) -> None:
        self._entries: dict[str, RiskEntry] = {}
        for entry in entries:
            self._entries[entry.id] = entry
        self._reindex()

    def _reindex(self) -> None:
        self._by_prefix: dict[str, RiskEntry] = {}
        self._by_country: dict[str, RiskEntry] = {}
        for entry in self._entries.values():
            if entry.kind == "prefix":
                self._by_prefix[entry.value] = entry
            else:
                self._by_country[entry.value] = entry
        self._lengths = sorted({len(p) for p in self._by_prefix}, reverse=True)

    # -- loading ---------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> RiskList:
        """A list from one CSV file (rows with enabled=false / kind=remove are skipped)."""
        entries, _ = _read_csv(Path(path).read_text(encoding="utf-8"), str(path))
        return cls(entries)

    @classmethod
    def bundled(cls) -> RiskList:
        """The list shipped with tollguard (``numbering/data/high_risk.csv``)."""
        text = resources.files("tollguard.numbering").joinpath("data/high_risk.csv")
        entries, _ = _read_csv(text.read_text(encoding="utf-8"), "<bundled high_risk.csv>")
        return cls(entries)

    @classmethod
    def merged(cls, override_path: str | Path | None) -> RiskList:
        """The bundled list with a site CSV merged over it (by ``id``)."""
        base = cls.bundled()
        if override_path is None:
            return base
        text = Path(override_path).read_text(encoding="utf-8")
        entries, removed = _read_csv(text, str(override_path))
        return base.with_overrides(entries, removed)

    def with_overrides(self, entries: Iterable[RiskEntry], removed: Iterable[str] = ()) -> RiskList:
        out = RiskList(self._entries.values())
        for rid in removed:
            out._entries.pop(rid, None)
        for entry in entries:
            out._entries[entry.id] = entry
        out._reindex()
        return out

    # -- queries ---------------------------------------------------------
    def match(self, e164: str, country: str | None) -> RiskEntry | None:
        """The entry for a number: longest matching prefix, else its country, else None."""
        digits = e164[1:] if e164.startswith("+") else e164
        by_prefix = self._by_prefix
        for n in self._lengths:
            if n <= len(digits):
                hit = by_prefix.get(digits[:n])
                if hit is not None:
                    return hit
        if country is not None:
            return self._by_country.get(country)
        return None

    def match_series(self, digits: pl.Series, country: pl.Series) -> pl.Series:
        """``match(...).id`` of each row: ``digits`` are E.164 digits without "+",
        ``country`` the number's country; null where nothing matches.

        Country entries by one hash lookup; prefix entries (longest first, one hash
        lookup per prefix length) only on the rows whose first digits some prefix
        entry can match.
        """
        if self._by_country:
            keys = list(self._by_country)
            ids = [self._by_country[c].id for c in keys]
            out = country.cast(pl.String).replace_strict(
                keys, ids, default=None, return_dtype=pl.String
            )
        else:
            out = pl.repeat(None, country.len(), dtype=pl.String, eager=True)
        if not self._by_prefix:
            return out.rename("risk")
        d = pl.lit(digits.cast(pl.String))
        heads = sorted({p[:3] for p in self._by_prefix if len(p) >= 3})
        maybe = d.str.head(3).is_in(heads)
        for p in self._by_prefix:
            if len(p) < 3:
                maybe = maybe | d.str.starts_with(p)
        rows = pl.select(maybe).to_series().fill_null(False).arg_true()
        if rows.len():
            sub = pl.lit(digits.cast(pl.String).gather(rows))
            lookups = []
            for n in self._lengths:
                keys = [p for p in self._by_prefix if len(p) == n]
                ids = [self._by_prefix[p].id for p in keys]
                lookups.append(
                    sub.str.head(n).replace_strict(keys, ids, default=None, return_dtype=pl.String)
                )
            lookups.append(pl.lit(out.gather(rows)))
            out = out.scatter(rows, pl.select(pl.coalesce(lookups)).to_series())
        return out.rename("risk")

    @property
    def entries(self) -> list[RiskEntry]:
        return list(self._entries.values())

    def get(self, entry_id: str) -> RiskEntry | None:
        return self._entries.get(entry_id)

    def __len__(self) -> int:
        return len(self._entries)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_REQUIRED)
        for e in self._entries.values():
            writer.writerow([e.id, e.kind, e.value, e.reason, e.source])
        return buf.getvalue()


def _clean_value(kind: str, raw: str, where: str) -> str:
    value = raw.strip()
    if kind == "country":
        value = value.upper()
        if not ((len(value) == 2 and value.isalpha()) or value == "001"):
            raise RiskListError(f"{where}: country {raw!r} is not ISO alpha-2 (e.g. 'TL') or '001'")
        return value
    digits = value.replace(" ", "").replace("-", "").removeprefix("+")
    if not digits.isdigit() or digits.startswith("0"):
        raise RiskListError(
            f"{where}: prefix {raw!r} must be E.164 digits starting with the country code "
            "(e.g. '+670' or '37190')"
        )
    return digits


def _read_csv(text: str, source: str) -> tuple[list[RiskEntry], list[str]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("id", "kind") if c not in header]
    if missing:
        raise RiskListError(f"{source}: missing column(s) {missing}; need {list(_REQUIRED)}")
    entries: list[RiskEntry] = []
    removed: list[str] = []
    seen: set[str] = set()
    for row_raw in reader:
        row: Mapping[str, str] = {
            (k or "").strip(): (v or "").strip() for k, v in row_raw.items() if k is not None
        }
        where = f"{source}:{reader.line_num}"
        rid = row.get("id", "")
        if not rid or rid.startswith("#"):
            continue
        kind = row.get("kind", "").lower()
        if kind == "remove" or row.get("enabled", "").lower() in _FALSE:
            removed.append(rid)
            continue
        if kind not in ("country", "prefix"):
            raise RiskListError(f"{where}: kind {kind!r} must be 'country', 'prefix' or 'remove'")
        for col in ("value", "reason", "source"):
            if col not in header:
                raise RiskListError(f"{source}: missing column {col!r}")
        if rid in seen:
            raise RiskListError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        entries.append(
            RiskEntry(
                id=rid,
                kind=cast(RiskKind, kind),
                value=_clean_value(kind, row.get("value", ""), where),
                reason=row.get("reason", ""),
                source=row.get("source", ""),
            )
        )
    return entries, removed
