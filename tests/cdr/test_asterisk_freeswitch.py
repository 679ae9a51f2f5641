"""Synthetic Asterisk and FreeSWITCH files: every layout, dispositions, DST, encodings."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from cdr_testlib import read_all, row, utc, write

from tollguard.cdr.dedup import Deduplicator
from tollguard.cdr.read import CdrFormatError, detect_format
from tollguard.policy import DialingContext

AMS = DialingContext(timezone="Europe/Amsterdam")


def ast16(
    src: str = "0201234567",
    dst: str = "0067012345",
    start: str = "2024-01-10 10:00:00",
    answer: str = "2024-01-10 10:00:05",
    end: str = "2024-01-10 10:01:05",
    duration: str = "65",
    billsec: str = "60",
    disposition: str = "ANSWERED",
    account: str = "acme",
) -> str:
    return (
        f'"{account}","{src}","{dst}","from-internal","""Reception"" <{src}>","SIP/100-0001",'
        f'"SIP/trunk-0002","Dial","SIP/trunk/{dst},60,tT","{start}","{answer}","{end}",'
        f'{duration},{billsec},"{disposition}","BILLING"'
    )


def ast18(uniqueid: str, **kw: str) -> str:
    return ast16(**kw) + f',"{uniqueid}",""'


def ast21(uniqueid: str, sequence: str, **kw: str) -> str:
    return ast18(uniqueid, **kw) + f',"","{uniqueid}",{sequence}'


def test_asterisk_16_columns_content_hash_ids(tmp_path: Path) -> None:
    line = ast16()
    path = write(tmp_path / "Master.csv", [line, ast16(dst="0031201234567"), line])
    detected = detect_format(path)
    assert (detected.name, len(detected.columns)) == ("asterisk-csv", 16)
    frame, quarantined, _ = read_all(path, ctx=AMS)
    assert quarantined == []
    ids = frame.get_column("record_id").to_list()
    assert ids[0].startswith("asterisk-csv:h:") and len(ids[0]) == len("asterisk-csv:h:") + 16
    assert ids[0] == ids[2] != ids[1]  # identical line, identical id
    first = row(frame, 1)
    assert first["account"] == "acme"
    assert first["start"] == utc("2024-01-10 09:00:00")  # CET
    assert first["answer"] == utc("2024-01-10 09:00:05")
    assert first["end"] == utc("2024-01-10 09:01:05")
    assert (first["duration"], first["billsec"]) == (65, 60)
    assert first["dst_channel"] == "SIP/trunk-0002"
    deduped, dropped = Deduplicator().filter(frame)
    assert (deduped.height, dropped) == (2, 1)


def test_asterisk_18_columns_uniqueid(tmp_path: Path) -> None:
    path = write(tmp_path / "Master.csv", [ast18("1700000000.1"), ast18("1700000000.2")])
    detected = detect_format(path)
    assert (detected.name, len(detected.columns)) == ("asterisk-csv", 18)
    assert "loguniqueid" in detected.reason
    frame, _, _ = read_all(path)
    assert frame.get_column("record_id").to_list() == [
        "asterisk-csv:1700000000.1",
        "asterisk-csv:1700000000.2",
    ]
    assert row(frame, 1)["start"] == utc("2024-01-10 10:00:00")  # no ctx: UTC


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("ANSWERED", "answered"),
        ("NO ANSWER", "no_answer"),
        ("BUSY", "busy"),
        ("FAILED", "failed"),
        ("CONGESTION", "congestion"),
        ("CANCEL", "cancelled"),
        ("CANCELLED", "cancelled"),
    ],
)
def test_asterisk_dispositions(tmp_path: Path, written: str, expected: str) -> None:
    answered = written == "ANSWERED"
    lines = [
        ast21("1.1", "1"),  # makes detection unambiguous
        ast21(
            "1.2",
            "2",
            disposition=written,
            answer="2024-01-10 10:00:05" if answered else "",
            billsec="60" if answered else "0",
        ),
    ]
    frame, quarantined, _ = read_all(write(tmp_path / "m.csv", lines))
    assert quarantined == []
    second = row(frame, 2)
    assert second["disposition"] == expected
    assert second["hangup_cause"] == written
    assert second["record_id"] == "asterisk-csv:1.2/2"
    assert (second["answer"] is None) is (not answered)


def test_unknown_asterisk_disposition_is_quarantined(tmp_path: Path) -> None:
    lines = [ast21("1.1", "1"), ast21("1.2", "2", disposition="MAYBE"), ast21("1.3", "3")]
    frame, quarantined, _ = read_all(write(tmp_path / "m.csv", lines))
    assert frame.height == 2
    assert [(q.line, q.reason) for q in quarantined] == [
        (
            2,
            "'MAYBE' is not an Asterisk disposition (ANSWERED, NO ANSWER, BUSY, FAILED, "
            "CONGESTION, CANCEL)",
        )
    ]


def test_dst_gap_is_quarantined_and_overlap_takes_earliest(tmp_path: Path) -> None:
    lines = [
        ast21("1.1", "1"),
        # 2024-03-31 02:30 does not exist in Amsterdam (clocks jump 02:00 -> 03:00).
        ast21("1.2", "2", start="2024-03-31 02:30:00", answer="2024-03-31 03:30:05",
              end="2024-03-31 03:31:05"),
        # 2024-10-27 02:00-03:00 happens twice; the call starts in the first pass and ends
        # in the second (end reads earlier than start on the wall clock).
        ast21("1.3", "3", start="2024-10-27 02:50:00", answer="2024-10-27 02:50:10",
              end="2024-10-27 02:10:00", duration="1200", billsec="1190"),
        ast21("1.4", "4", start="2024-10-27 02:30:00", answer="2024-10-27 02:30:05",
              end="2024-10-27 02:31:05"),
    ]  # fmt: skip
    frame, quarantined, _ = read_all(write(tmp_path / "m.csv", lines), ctx=AMS)
    assert [q.line for q in quarantined] == [2]
    assert "does not exist in Europe/Amsterdam" in quarantined[0].reason
    crossing = row(frame, 3)
    assert crossing["start"] == utc("2024-10-27 00:50:00")  # earliest: CEST
    assert crossing["answer"] == utc("2024-10-27 00:50:10")
    assert crossing["end"] == utc("2024-10-27 01:10:00")  # second pass: CET
    ambiguous = row(frame, 4)
    assert ambiguous["start"] == utc("2024-10-27 00:30:00")
    assert ambiguous["end"] == utc("2024-10-27 00:31:05")


def test_non_utf8_bytes_are_read_as_latin1(tmp_path: Path) -> None:
    good = ast21("1.1", "1")
    odd = ast21("1.2", "2").replace("Reception", "Caf\xe9 \xa5\xa5")
    path = tmp_path / "m.csv"
    path.write_bytes(good.encode() + b"\n" + odd.encode("latin-1") + b"\n")
    frame, quarantined, _ = read_all(path)
    assert quarantined == []
    assert frame.height == 2
    assert row(frame, 2)["record_id"] == "asterisk-csv:1.2/2"


def test_crlf_line_endings_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    body = "\r\n".join([ast21("1.1", "1"), "", ast21("1.2", "2"), "   ", ast21("1.3", "3")])
    path.write_bytes((body + "\r\n").encode())
    frame, quarantined, batches = read_all(path)
    assert quarantined == []
    assert frame.get_column("source_line").to_list() == [1, 3, 5]
    assert row(frame, 5)["hangup_cause"] == "ANSWERED"
    assert sum(b.lines_read for b in batches) == 5


def fs_line(
    cause: str,
    billsec: str = "0",
    answer: str = "",
    uuid: str = "u1",
    start: str = "2020-02-10 22:41:05",
    end: str = "2020-02-10 22:41:35",
    duration: str = "30",
    width: int = 15,
) -> str:
    fields = [
        "Bob", "1002", "00252612345", "default", start, answer, end, duration, billsec, cause,
        uuid, "", "acct9", "PCMA", "PCMA",
    ]  # fmt: skip
    return ",".join(fields[:width])


@pytest.mark.parametrize(
    ("cause", "billsec", "answer", "expected"),
    [
        ("NORMAL_CLEARING", "25", "2020-02-10 22:41:10", "answered"),
        ("NORMAL_CLEARING", "0", "", "no_answer"),
        ("USER_BUSY", "0", "", "busy"),
        ("NO_ANSWER", "0", "", "no_answer"),
        ("ALLOTTED_TIMEOUT", "0", "", "no_answer"),
        ("ORIGINATOR_CANCEL", "0", "", "cancelled"),
        ("NORMAL_CIRCUIT_CONGESTION", "0", "", "congestion"),
        ("SWITCH_CONGESTION", "0", "", "congestion"),
        ("CALL_REJECTED", "0", "", "failed"),
        ("UNALLOCATED_NUMBER", "0", "", "failed"),
        ("NORMAL_CLEARING", "0", "2020-02-10 22:41:35", "answered"),  # answer stamp present
        ("RECOVERY_ON_TIMER_EXPIRE", "12", "", "answered"),  # billsec > 0
    ],
)
def test_freeswitch_causes(
    tmp_path: Path, cause: str, billsec: str, answer: str, expected: str
) -> None:
    lines = [fs_line("NORMAL_CLEARING", uuid="u0"), fs_line(cause, billsec, answer)]
    frame, quarantined, _ = read_all(write(tmp_path / "Master.csv", lines))
    assert quarantined == []
    rec = row(frame, 2)
    assert rec["disposition"] == expected
    assert rec["hangup_cause"] == cause
    if expected == "answered" and not answer:
        # Answer derived from end - billsec when the stamp is missing.
        assert rec["answer"] == utc("2020-02-10 22:41:35") - __import__("datetime").timedelta(
            seconds=int(billsec)
        )
    if expected != "answered":
        assert rec["answer"] is None and rec["billsec"] == 0


def test_freeswitch_default_13_columns_and_epoch(tmp_path: Path) -> None:
    lines = [
        fs_line("NORMAL_CLEARING", "25", "2020-02-10 22:41:10", uuid="a", width=13),
        fs_line("USER_BUSY", uuid="b", start="1581374465", end="1581374475", duration="10",
                width=13),
    ]  # fmt: skip
    path = write(tmp_path / "Master.csv", lines)
    detected = detect_format(path)
    assert (detected.name, len(detected.columns)) == ("freeswitch-csv", 13)
    assert "default" in detected.reason
    frame, quarantined, _ = read_all(path, ctx=AMS)
    assert quarantined == []
    assert row(frame, 1)["start"] == utc("2020-02-10 21:41:05")
    epoch = row(frame, 2)
    assert epoch["start"] == utc("2020-02-10 22:41:05")  # epoch is UTC whatever the zone
    assert (epoch["disposition"], epoch["account"]) == ("busy", "acct9")
    assert epoch["record_id"] == "freeswitch-csv:b"


def test_freeswitch_asterisk_template_is_not_asterisk(tmp_path: Path) -> None:
    def line(uuid: str, cause: str, billsec: str) -> str:
        return (
            f'"acct7","1002","0067012345","default","""Bob"" <1002>","sofia/internal/1002@pbx",'
            f'"sofia/external/0067012345","bridge","sofia/gateway/gw1/0067012345",'
            f'"2024-05-01 03:00:00","{"2024-05-01 03:00:04" if billsec != "0" else ""}",'
            f'"2024-05-01 03:10:00","600","{billsec}","{cause}","default","{uuid}",""'
        )

    path = write(tmp_path / "Master.csv", [line("x1", "NORMAL_CLEARING", "596"),
                                           line("x2", "ORIGINATOR_CANCEL", "0")])  # fmt: skip
    detected = detect_format(path)
    assert (detected.name, len(detected.columns)) == ("freeswitch-csv", 18)
    assert "asterisk" in detected.reason
    frame, quarantined, _ = read_all(path)
    assert quarantined == []
    first = row(frame, 1)
    assert first["record_id"] == "freeswitch-csv:x1"
    assert (first["account"], first["caller"], first["callee"]) == ("acct7", "1002", "0067012345")
    assert first["channel"] == "sofia/internal/1002@pbx"
    assert first["dst_channel"] == "sofia/external/0067012345"
    assert (first["duration"], first["billsec"], first["disposition"]) == (600, 596, "answered")
    assert row(frame, 2)["disposition"] == "cancelled"


def test_forced_format(tmp_path: Path, samples_dir: Path) -> None:
    path = write(tmp_path / "m.csv", [ast18("1.1"), ast18("1.2")])
    frame, _, batches = read_all(path, fmt="asterisk-csv")
    assert frame.height == 2 and batches[0].format == "asterisk-csv"
    with pytest.raises(
        CdrFormatError, match="13 or 15 or 18 fields per line, but most of the first lines have 21"
    ):
        read_all(samples_dir / "asterisk" / "newcdrcolumns.csv", fmt="freeswitch-csv")
    with pytest.raises(CdrFormatError, match="unknown format 'cisco'"):
        read_all(path, fmt="cisco")


def test_forced_wrong_layout_quarantines_what_it_cannot_read(tmp_path: Path) -> None:
    # An Asterisk 18-field file forced as FreeSWITCH (whose 'asterisk' template has the
    # same field order): ANSWERED with billsec reads as answered, but 'NO ANSWER' is no
    # Q.850 cause, so that line is quarantined instead of guessed.
    lines = [ast18("1.1"), ast18("1.2", disposition="NO ANSWER", answer="", billsec="0")]
    frame, quarantined, _ = read_all(write(tmp_path / "m.csv", lines), fmt="freeswitch-csv")
    assert frame.get_column("source_line").to_list() == [1]
    assert row(frame, 1)["disposition"] == "answered"
    assert [q.line for q in quarantined] == [2]
    assert quarantined[0].reason.startswith("'NO ANSWER' is not a Q.850 hangup cause name")


def test_unrecognisable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.csv", ["hello,world,1", "foo,bar,2"])
    with pytest.raises(CdrFormatError) as info:
        detect_format(path)
    message = str(info.value)
    assert "cannot tell the format" in message
    for name in ("asterisk-csv", "freeswitch-csv", "kamailio-acc", "csv-mapped", "jsonl"):
        assert name in message
    with pytest.raises(CdrFormatError):
        read_all(path)


def test_empty_file_gives_no_batches(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.csv", ["", ""])
    with pytest.raises(CdrFormatError, match="no lines"):
        detect_format(path)
    frame, quarantined, batches = read_all(path)
    assert (frame.height, quarantined, batches) == (0, [], [])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_all(tmp_path / "nope.csv")


def test_frame_schema_is_exact(tmp_path: Path) -> None:
    frame, _, _ = read_all(write(tmp_path / "m.csv", [ast21("1.1", "1")]))
    from tollguard.cdr.model import RECORD_SCHEMA

    assert frame.schema == pl.Schema(RECORD_SCHEMA)
