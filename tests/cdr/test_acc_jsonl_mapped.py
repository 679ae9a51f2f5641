"""Kamailio/OpenSIPS acc exports, JSON Lines and mapped CSV."""

from __future__ import annotations

from pathlib import Path

import pytest
from cdr_testlib import read_all, row, utc, write

from tollguard.cdr.mapping import ColumnMapping
from tollguard.cdr.read import CdrFormatError, detect_format
from tollguard.policy import DialingContext

AMS = DialingContext(timezone="Europe/Amsterdam")


def test_kamailio_acc_transactions(tmp_path: Path) -> None:
    path = write(
        tmp_path / "acc.csv",
        [
            "id,method,from_tag,to_tag,callid,sip_code,sip_reason,time,src_user,dst_user,"
            "src_domain,dst_domain,src_ip",
            "1,INVITE,ft1,tt1,c1@host,200,OK,2024-03-01 10:00:00,100,0067012345,pbx.example,"
            "gw.example,10.0.0.5",
            "2,BYE,tt1,ft1,c1@host,200,OK,2024-03-01 10:05:00,0067012345,100,gw.example,"
            "pbx.example,10.0.0.9",
            "3,INVITE,ft2,,c2@host,486,Busy Here,2024-03-01 10:06:00,100,0067099999,pbx.example,"
            "gw.example,10.0.0.5",
            "4,INVITE,ft3,,c3@host,487,Request Terminated,1709287620,101,0067011111,pbx.example,"
            "gw.example,10.0.0.6",
        ],
    )
    detected = detect_format(path)
    assert detected.name == "kamailio-acc"
    assert detected.has_header and detected.header_line == 1
    frame, quarantined, _ = read_all(path, ctx=AMS)
    assert [(q.line, q.reason) for q in quarantined] == [
        (3, "method BYE is not a call (only INVITE rows are call records)")
    ]
    answered = row(frame, 2)
    assert answered["record_id"] == "kamailio-acc:c1@host/ft1"
    assert (answered["caller"], answered["callee"], answered["account"]) == (
        "100",
        "0067012345",
        "100",
    )
    assert answered["start"] == answered["answer"] == utc("2024-03-01 09:00:00")
    assert (answered["duration"], answered["billsec"]) == (0, 0)  # acc rows carry no duration
    assert (answered["disposition"], answered["hangup_cause"]) == ("answered", "200 OK")
    assert (answered["channel"], answered["dst_channel"]) == ("10.0.0.5", "gw.example")
    busy = row(frame, 4)
    assert (busy["disposition"], busy["hangup_cause"]) == ("busy", "486 Busy Here")
    assert (busy["duration"], busy["billsec"]) == (0, 0)
    cancelled = row(frame, 5)
    assert cancelled["disposition"] == "cancelled"
    assert cancelled["start"] == utc("2024-03-01 10:07:00")  # epoch seconds: UTC


def test_kamailio_acc_cdrs_fractional_duration(tmp_path: Path) -> None:
    path = write(
        tmp_path / "acc_cdrs.csv",
        [
            "id;start_time;end_time;duration;callid;from_tag;src_user;dst_user",
            "7;2024-03-01 10:00:00.250;2024-03-01 10:00:12.595;12.345;k1;f1;200;0031201234567",
        ],
    )
    detected = detect_format(path)
    assert (detected.name, detected.separator) == ("kamailio-acc", ";")
    frame, quarantined, _ = read_all(path)
    assert quarantined == []
    rec = row(frame, 2)
    assert rec["record_id"] == "kamailio-acc:k1/f1"
    assert rec["start"] == utc("2024-03-01 10:00:00.250")
    assert rec["end"] == utc("2024-03-01 10:00:12.595")
    assert (rec["duration"], rec["billsec"], rec["disposition"]) == (13, 13, "answered")


def test_opensips_acc_cdr_mode(tmp_path: Path) -> None:
    header = (
        "id,method,from_tag,to_tag,callid,sip_code,sip_reason,time,duration,ms_duration,"
        "setuptime,created,src_user,dst_user"
    )
    path = write(
        tmp_path / "opensips.csv",
        [
            header,
            "1,INVITE,fa,ta,o1,200,OK,2024-03-01 10:00:05,60,60120,5,2024-03-01 10:00:00,"
            "31201111111,8823912345",
            "2,INVITE,fb,,o2,487,Request Terminated,2024-03-01 11:00:07,0,0,7,"
            "2024-03-01 11:00:00,31201111111,8823912345",
            "3,INVITE,fc,,o3,503,Service Unavailable,2024-03-01 12:00:00,0,0,0,"
            "2024-03-01 12:00:00,31201111111,8823912345",
            "4,INVITE,fd,,o4,200,OK,2024-03-01 10:00:05,-3,0,5,2024-03-01 10:00:00,1,2",
        ],
    )
    detected = detect_format(path)
    assert detected.name == "opensips-acc"
    assert "OpenSIPS" in detected.reason
    frame, quarantined, _ = read_all(path, source="edge1")
    answered = row(frame, 2)
    assert answered["record_id"] == "edge1:o1/fa"
    assert answered["start"] == utc("2024-03-01 10:00:00")
    assert answered["answer"] == utc("2024-03-01 10:00:05")
    assert answered["end"] == utc("2024-03-01 10:01:05")
    assert (answered["duration"], answered["billsec"]) == (65, 60)
    cancelled = row(frame, 3)
    assert cancelled["disposition"] == "cancelled"
    assert (cancelled["duration"], cancelled["billsec"]) == (7, 0)
    assert cancelled["end"] == utc("2024-03-01 11:00:07")
    assert row(frame, 4)["disposition"] == "congestion"
    assert [(q.line, q.reason) for q in quarantined] == [(5, "negative billsec -3")]


def test_acc_forced_on_headerless_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", ["1,2,3"])
    with pytest.raises(CdrFormatError, match="needs a header line with acc column names"):
        read_all(path, fmt="opensips-acc")


def test_jsonl(tmp_path: Path) -> None:
    path = write(
        tmp_path / "cdr.jsonl",
        [
            '{"unique_id": "j1", "account": "acme", "caller": "+31201234567", "callee": '
            '"+67077123456", "start": "2024-04-01T10:00:00+02:00", "answer": '
            '"2024-04-01T10:00:03+02:00", "end": "2024-04-01T10:02:03+02:00", "duration": 123, '
            '"billsec": 120, "disposition": "answered"}',
            "not json at all",
            '["a", "list"]',
            '{"uniqueid": "j2", "src": "100", "dst": "200", "start": 1711958400, "duration": 30, '
            '"billsec": 0, "disposition": "NO ANSWER"}',
            "",
            '{"record_id": "pbx9:abc", "caller": "1", "callee": "2", "start": '
            '"2024-04-01 12:00:00", "end": "2024-04-01T10:00:10Z", "hangup_cause": '
            '"NORMAL_CLEARING", "billsec": 10}',
            '{"caller": "1", "callee": "2", "duration": 5}',
        ],
    )
    detected = detect_format(path)
    assert detected.name == "jsonl"
    frame, quarantined, _ = read_all(path, ctx=AMS)
    assert [q.line for q in quarantined] == [2, 3, 7]
    assert quarantined[0].reason.startswith("not valid JSON")
    assert quarantined[1].reason == "expected a JSON object, got list"
    assert quarantined[2].reason == "no start time"
    first = row(frame, 1)
    assert first["record_id"] == "jsonl:j1"
    assert first["start"] == utc("2024-04-01 08:00:00")
    assert first["end"] == utc("2024-04-01 08:02:03")
    assert (first["duration"], first["billsec"], first["disposition"]) == (123, 120, "answered")
    epoch = row(frame, 4)
    assert epoch["start"] == utc("2024-04-01 08:00:00")
    assert epoch["end"] == utc("2024-04-01 08:00:30")  # derived from duration
    assert (epoch["caller"], epoch["disposition"]) == ("100", "no_answer")
    verbatim = row(frame, 6)
    assert verbatim["record_id"] == "pbx9:abc"
    assert verbatim["start"] == utc("2024-04-01 10:00:00")  # local (CEST) time
    assert (verbatim["duration"], verbatim["disposition"]) == (10, "answered")


def test_csv_with_known_header_needs_no_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path / "export.csv",
        [
            "calldate,src,dst,duration,billsec,disposition,accountcode,uniqueid,sequence",
            "2024-01-10 10:00:00,100,0067012345,65,60,ANSWERED,acme,171.1,4",
            "2024-01-10 11:00:00,100,0067012345,20,0,NO ANSWER,acme,171.2,",
        ],
    )
    detected = detect_format(path)
    assert detected.name == "csv-mapped"
    assert "start=calldate" in detected.reason
    frame, quarantined, _ = read_all(path, ctx=AMS)
    assert quarantined == []
    first = row(frame, 2)
    assert first["record_id"] == "csv-mapped:171.1/4"
    assert first["start"] == utc("2024-01-10 09:00:00")
    assert first["end"] == utc("2024-01-10 09:01:05")
    assert first["answer"] == utc("2024-01-10 09:00:05")  # end - billsec
    assert (first["account"], first["disposition"]) == ("acme", "answered")
    assert row(frame, 3)["record_id"] == "csv-mapped:171.2"


def test_explicit_mapping_time_format_and_separator(tmp_path: Path) -> None:
    path = write(
        tmp_path / "carrier.csv",
        [
            "Klant;Van;Naar;Begin;Einde;Status",
            "k1;0201234567;0067012345;10/01/2024 10:00:00;10/01/2024 10:10:00;200",
            "k2;0201234567;0067012345;31/01/2024 10:00:00;31/01/2024 10:00:30;486",
            "k3;0201234567;0067012345;2024-01-31;31/01/2024 10:00:30;486",
            "k4;0201234567;0067012345;31/01/2024 10:00:00;31/01/2024 10:00:30;ok",
        ],
    )
    mapping = ColumnMapping.from_strings(
        ["account=Klant", "caller=Van", "callee=Naar", "start=Begin", "end=Einde"],
        time_format="%d/%m/%Y %H:%M:%S",
    )
    frame, quarantined, batches = read_all(path, mapping=mapping, ctx=AMS)
    assert batches[0].format == "csv-mapped"
    assert frame.height == 2
    first = row(frame, 2)
    assert first["start"] == utc("2024-01-10 09:00:00")
    assert first["end"] == utc("2024-01-10 09:10:00")
    assert (first["duration"], first["account"], first["disposition"]) == (600, "k1", "answered")
    assert (first["answer"], first["billsec"]) == (first["start"], 600)  # answered at start
    assert first["record_id"].startswith("csv-mapped:h:")  # no unique id column: content hash
    busy = row(frame, 3)
    assert (busy["disposition"], busy["billsec"], busy["duration"]) == ("busy", 0, 30)
    assert [(q.line, q.reason) for q in quarantined] == [
        (4, "start time '2024-01-31' is not a date/time I can read"),
        (5, "'ok' is not a disposition, Q.850 cause name or SIP code"),
    ]


def test_mapping_with_field_list_for_headerless_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "custom.csv",
        ["2024-05-01 08:00:00,600,acme,0067012345,ANSWERED,u-1"],
    )
    mapping = ColumnMapping(
        columns={"callee": "number"},
        fields=["calldate", "duration", "accountcode", "number", "disposition", "uniqueid"],
    )
    frame, quarantined, _ = read_all(path, fmt="csv-mapped", mapping=mapping)
    assert quarantined == []
    rec = row(frame, 1)
    assert (rec["record_id"], rec["callee"], rec["account"]) == (
        "csv-mapped:u-1",
        "0067012345",
        "acme",
    )
    assert rec["end"] == utc("2024-05-01 08:10:00")


def test_mapping_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown record field"):
        ColumnMapping(columns={"begin": "x"})
    with pytest.raises(ValueError, match="FIELD=COLUMN"):
        ColumnMapping.from_strings(["start"])
    path = write(tmp_path / "e.csv", ["a,b,c", "1,2,3"])
    with pytest.raises(CdrFormatError, match="mapped column 'when'"):
        read_all(path, mapping=ColumnMapping(columns={"start": "when"}))
    with pytest.raises(CdrFormatError, match="start column and an end or duration column"):
        read_all(path, mapping=ColumnMapping(columns={"start": "a"}))


def test_header_without_times_gives_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", ["src,dst,accountcode", "1,2,3"])
    with pytest.raises(CdrFormatError, match="no start time column"):
        detect_format(path)
