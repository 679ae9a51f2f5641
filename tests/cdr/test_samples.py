"""The real CDR files in tests/data/samples, read by auto-detection."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
from cdr_testlib import read_all, row, utc
from polars.testing import assert_frame_equal

from tollguard.cdr.dedup import Deduplicator
from tollguard.cdr.model import RECORD_SCHEMA
from tollguard.cdr.read import detect_format
from tollguard.policy import DialingContext

MOSCOW = DialingContext(country="RU", timezone="Europe/Moscow")
AMSTERDAM = DialingContext(timezone="Europe/Amsterdam")
SHANGHAI = DialingContext(country="CN", timezone="Asia/Shanghai")


def test_newcdrcolumns_detected_as_asterisk_csv_21(samples_dir: Path) -> None:
    path = samples_dir / "asterisk" / "newcdrcolumns.csv"
    detected = detect_format(path)
    assert detected.name == "asterisk-csv"
    assert len(detected.columns) == 21
    assert detected.columns[-3:] == ["peeraccount", "linkedid", "sequence"]
    assert "Asterisk" in detected.reason and "21" in detected.reason


def test_newcdrcolumns_records(samples_dir: Path) -> None:
    frame, quarantined, batches = read_all(
        samples_dir / "asterisk" / "newcdrcolumns.csv", ctx=MOSCOW
    )
    assert quarantined == []
    assert [b.format for b in batches] == ["asterisk-csv"]
    assert sum(b.lines_read for b in batches) == 7
    assert frame.schema == pl.Schema(RECORD_SCHEMA)
    assert frame.height == 7
    first = row(frame, 1)
    assert first["record_id"] == "asterisk-csv:1706368044.0/0"
    assert first["source"] == "asterisk-csv"
    assert first["account"] == ""
    assert (first["caller"], first["callee"]) == ("89245555937", "211474")
    assert first["start"] == utc("2024-01-27 12:07:24")  # 15:07:24 Moscow (UTC+3)
    assert first["answer"] == utc("2024-01-27 12:07:24")
    assert first["end"] == utc("2024-01-27 12:07:51")
    assert (first["duration"], first["billsec"]) == (27, 27)
    assert first["disposition"] == "answered"
    assert first["hangup_cause"] == "ANSWERED"
    assert first["channel"] == "SIP/211474-00000000"
    assert first["source_file"].endswith("newcdrcolumns.csv")
    # NO ANSWER with an answer time and billsec written: normalized to no answer.
    second = row(frame, 2)
    assert second["disposition"] == "no_answer"
    assert second["answer"] is None
    assert (second["duration"], second["billsec"]) == (60, 0)
    assert second["dst_channel"] == "SIP/301-00000004"
    # Empty answer written as nothing between commas.
    third = row(frame, 3)
    assert third["answer"] is None
    assert third["record_id"] == "asterisk-csv:1706372196.14/10"
    # Caller-id name with stray bytes does not disturb the fields.
    fifth = row(frame, 5)
    assert fifth["caller"] == "81079246516548"
    assert fifth["answer"] == utc("2024-01-28 01:10:52")
    assert (fifth["duration"], fifth["billsec"]) == (36, 30)
    # uniqueid with a system-name prefix.
    assert row(frame, 6)["record_id"] == "asterisk-csv:mainserverdss-1706420300.0/0"
    busy = row(frame, 7)
    assert busy["disposition"] == "busy"
    assert busy["duration"] == 0
    assert busy["start"] == busy["end"] == utc("2024-01-28 08:57:38")
    assert frame.get_column("disposition").value_counts(sort=True).rows() == [
        ("answered", 4),
        ("no_answer", 2),
        ("busy", 1),
    ]


def test_newcdrcolumns_assume_utc_and_source(samples_dir: Path) -> None:
    frame, _, _ = read_all(
        samples_dir / "asterisk" / "newcdrcolumns.csv", ctx=MOSCOW, assume_utc=True, source="pbx1"
    )
    first = row(frame, 1)
    assert first["start"] == utc("2024-01-27 15:07:24")
    assert first["record_id"] == "pbx1:1706368044.0/0"
    assert first["source"] == "pbx1"


def test_clid_first_layout(samples_dir: Path) -> None:
    path = samples_dir / "asterisk" / "clid-first-with-sequence.csv"
    detected = detect_format(path)
    assert detected.name == "asterisk-custom"
    assert detected.columns[0] == "clid"
    assert len(detected.columns) == 19
    frame, quarantined, _ = read_all(path, ctx=AMSTERDAM)
    assert quarantined == []
    assert frame.height == 7
    first = row(frame, 1)
    assert first["record_id"] == "asterisk-custom:1690325492.2/2"
    assert (first["caller"], first["callee"], first["account"]) == ("client1", "6789", "")
    assert first["start"] == utc("2023-07-25 23:51:32")  # 01:51:32 CEST
    assert first["answer"] == utc("2023-07-25 23:51:50")
    assert first["end"] == utc("2023-07-25 23:52:04")
    assert (first["duration"], first["billsec"], first["disposition"]) == (31, 13, "answered")
    assert first["channel"] == "PJSIP/client1-00000002"
    assert first["dst_channel"] == "PJSIP/client2-00000003"
    second = row(frame, 2)
    assert second["disposition"] == "no_answer"
    assert second["answer"] is None
    assert (second["duration"], second["billsec"]) == (30, 0)
    assert row(frame, 4)["record_id"] == "asterisk-custom:1690327106.0/0"
    deduped, dropped = Deduplicator().filter(frame)
    assert (deduped.height, dropped) == (7, 0)


def test_freeswitch_spreadsheet_dates_and_duplicates(samples_dir: Path) -> None:
    path = samples_dir / "freeswitch" / "example-template-spreadsheet-dates.csv"
    detected = detect_format(path)
    assert detected.name == "freeswitch-csv"
    assert len(detected.columns) == 15
    assert "example" in detected.reason
    frame, quarantined, _ = read_all(path, ctx=SHANGHAI)
    assert quarantined == []
    assert frame.height == 7
    first = row(frame, 1)
    assert first["record_id"] == "freeswitch-csv:d80e22e0-4c15-11ea-97a0-9dd79410affb"
    assert (first["caller"], first["callee"], first["account"]) == ("1002", "&", "1002")
    assert first["start"] == utc("2020-02-10 14:41:00")  # 2020/2/10 22:41 in UTC+8
    assert first["answer"] == utc("2020-02-10 14:41:00")
    assert (first["duration"], first["billsec"], first["disposition"]) == (11, 9, "answered")
    assert first["hangup_cause"] == "NORMAL_CLEARING"
    unanswered = row(frame, 2)
    assert unanswered["disposition"] == "no_answer"
    assert unanswered["hangup_cause"] == "NO_USER_RESPONSE"
    assert unanswered["answer"] is None
    assert (unanswered["caller"], unanswered["account"]) == ("0", "")
    long_call = row(frame, 3)
    assert long_call["end"] == utc("2020-02-10 14:47:00")
    assert (long_call["duration"], long_call["billsec"]) == (329, 327)
    # Answered (billsec > 0) whatever the cause says.
    assert row(frame, 4)["disposition"] == "answered"

    deduped, dropped = Deduplicator().filter(frame)
    assert (deduped.height, dropped) == (5, 2)
    survivors = deduped.filter(pl.col("record_id").str.contains("7adced1a"))
    assert survivors.get_column("source_line").to_list() == [5]  # first occurrence wins
    assert survivors.get_column("hangup_cause").to_list() == ["NORMAL_CLEARING"]


def test_gzip_sample_reads_the_same(samples_dir: Path, tmp_path: Path) -> None:
    plain = samples_dir / "asterisk" / "newcdrcolumns.csv"
    packed = tmp_path / "Master.csv.gz"
    with plain.open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert detect_format(packed).name == "asterisk-csv"
    a, _, _ = read_all(plain, ctx=MOSCOW)
    b, _, _ = read_all(packed, ctx=MOSCOW)
    assert_frame_equal(a.drop("source_file"), b.drop("source_file"))
    assert b.get_column("source_file").unique().to_list() == [str(packed)]
