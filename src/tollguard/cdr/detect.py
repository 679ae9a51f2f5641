"""Known file layouts and how a file's first lines tell which one it is."""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tollguard.cdr.blocks import sample_lines
from tollguard.cdr.disposition import ASTERISK_DISPOSITIONS, KNOWN_Q850, Q850_SHAPE
from tollguard.cdr.mapping import ALIASES, ColumnMapping

FORMATS: list[str] = [
    "asterisk-csv",
    "asterisk-custom",
    "freeswitch-csv",
    "kamailio-acc",
    "opensips-acc",
    "csv-mapped",
    "jsonl",
]

FORMAT_HELP: dict[str, str] = {
    "asterisk-csv": "Asterisk cdr_csv Master.csv: no header, 16/18/21 fields, accountcode first",
    "asterisk-custom": "Asterisk cdr_custom layout starting with clid, no header, 16/18/19 fields",
    "freeswitch-csv": "FreeSWITCH mod_cdr_csv, no header, 13/15/18 fields (3 templates)",
    "kamailio-acc": "Kamailio acc / acc_cdrs table exported to CSV with a header",
    "opensips-acc": "OpenSIPS acc table (CDR mode) exported to CSV with a header",
    "csv-mapped": "any CSV with a header (or a given field list) and a column mapping",
    "jsonl": "JSON Lines, one object per line with tollguard's field names",
}

AST16 = [
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
]  # fmt: skip
AST18 = [*AST16, "uniqueid", "userfield"]
AST21 = [*AST18, "peeraccount", "linkedid", "sequence"]
ASTERISK_LAYOUTS: dict[int, tuple[list[str], str]] = {
    16: (AST16, "the 16 standard columns"),
    18: (AST18, "the 16 standard columns + uniqueid, userfield (loguniqueid/loguserfield)"),
    21: (AST21, "uniqueid, userfield and newcdrcolumns (peeraccount, linkedid, sequence)"),
}
CLID16 = [
    "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata", "start",
    "answer", "end", "duration", "billsec", "disposition", "amaflags", "accountcode",
]  # fmt: skip
CLID18 = [*CLID16, "uniqueid", "userfield"]
CLID19 = [*CLID18, "sequence"]
ASTERISK_CUSTOM_LAYOUTS: dict[int, tuple[list[str], str]] = {
    16: (CLID16, "clid first, accountcode after amaflags"),
    18: (CLID18, "clid first, accountcode after amaflags, then uniqueid, userfield"),
    19: (CLID19, "clid first, accountcode after amaflags, then uniqueid, userfield, sequence"),
}
FS13 = [
    "caller_id_name", "caller_id_number", "destination_number", "context", "start_stamp",
    "answer_stamp", "end_stamp", "duration", "billsec", "hangup_cause", "uuid", "bleg_uuid",
    "accountcode",
]  # fmt: skip
FS15 = [*FS13, "read_codec", "write_codec"]
FS18 = [
    "accountcode", "caller_id_number", "destination_number", "context", "caller_id",
    "channel_name", "bridge_channel", "last_app", "last_arg", "start_stamp", "answer_stamp",
    "end_stamp", "duration", "billsec", "hangup_cause", "amaflags", "uuid", "userfield",
]  # fmt: skip
FREESWITCH_LAYOUTS: dict[int, tuple[list[str], str]] = {
    13: (FS13, "the compiled-in default template (13 fields)"),
    15: (FS15, "the 'example' template (15 fields)"),
    18: (FS18, "the 'asterisk' template (18 fields)"),
}
HEADERLESS: dict[str, dict[int, tuple[list[str], str]]] = {
    "asterisk-csv": ASTERISK_LAYOUTS,
    "asterisk-custom": ASTERISK_CUSTOM_LAYOUTS,
    "freeswitch-csv": FREESWITCH_LAYOUTS,
}
ACC_FORMATS = ("kamailio-acc", "opensips-acc")
OPENSIPS_ONLY = frozenset({"setuptime", "created", "ms_duration"})
SEPARATORS = (",", ";", "\t", "|")
_KNOWN_NAMES = frozenset(a for names in ALIASES.values() for a in names) | frozenset(
    {"method", "from_tag", "to_tag", "sip_code", "sip_reason", "time", "src_domain", "dst_domain"}
)
_NUMBER_OR_TIME = re.compile(r"^[\d\s:./+\-TZ]+$")


class CdrFormatError(ValueError):
    """A file whose layout is not one tollguard can read (or not the one asked for)."""


@dataclass(frozen=True)
class DetectedFormat:
    name: str  # one of FORMATS
    reason: str  # why, in words a user understands
    columns: list[str]  # the file's columns in order (header names or the known layout)
    has_header: bool = False
    separator: str = ","
    header_line: int = 0  # physical line number of the header, 0 when none
    extra: dict[str, str] = field(default_factory=dict)


def _split(line: str, separator: str) -> list[str]:
    return next(csv.reader([line], delimiter=separator, quotechar='"'), [])


def _guess_separator(line: str) -> str:
    unquoted = re.sub(r'"(?:[^"]|"")*"', "", line)
    counts = {sep: unquoted.count(sep) for sep in SEPARATORS}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def _looks_like_header(fields: list[str]) -> bool:
    cleaned = [f.strip() for f in fields]
    if len(cleaned) < 2 or any(not f or _NUMBER_OR_TIME.match(f) for f in cleaned):
        return False
    return sum(f.lower() in _KNOWN_NAMES for f in cleaned) >= 2


def _share(
    rows: list[list[str]], index: int, test: set[str] | frozenset[str] | re.Pattern[str]
) -> float:
    if not rows:
        return 0.0
    hits = 0
    for row in rows:
        value = row[index].strip().upper() if index < len(row) else ""
        ok = bool(test.match(value)) if isinstance(test, re.Pattern) else value in test
        hits += ok
    return hits / len(rows)


def _header_format(path: Path, line_no: int, names: list[str], sep: str) -> DetectedFormat:
    lower = {n.strip().lower() for n in names}
    seen = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
    if lower & {"callid", "call_id"} and lower & {"sip_code", "method", "start_time"}:
        if lower & OPENSIPS_ONLY:
            only = sorted(lower & OPENSIPS_ONLY)[0]
            why = f"header names acc columns ({seen}) including {only}, which only OpenSIPS writes"
            return DetectedFormat("opensips-acc", why, names, True, sep, line_no)
        why = f"header names Kamailio acc columns ({seen})"
        return DetectedFormat("kamailio-acc", why, names, True, sep, line_no)
    resolved = ColumnMapping().resolve(names)
    if "start" in resolved and ("end" in resolved or "duration" in resolved):
        found = ", ".join(f"{k}={v}" for k, v in resolved.items())
        why = f"header line with column names I know ({found})"
        return DetectedFormat("csv-mapped", why, names, True, sep, line_no)
    raise CdrFormatError(
        f"{path}: line {line_no} looks like a header ({seen}) but has no start time column and no "
        f"end/duration column I recognise; use --format csv-mapped with a column mapping "
        f"(e.g. --map start=<column> --map duration=<column>). Known formats: {', '.join(FORMATS)}"
    )


def detect_format(path: Path) -> DetectedFormat:
    """Tell the layout of a CDR file from its first 50 non-blank lines."""
    path = Path(path)
    sample = sample_lines(path)
    if not sample:
        raise CdrFormatError(f"{path}: the file has no lines to read, so its format cannot be told")
    first_no, first = sample[0]
    if first.lstrip().startswith("{"):
        return DetectedFormat(
            "jsonl", "lines are JSON objects ('{...}'): JSON Lines", [], False, "", 0
        )
    sep = _guess_separator(first)
    fields = _split(first, sep)
    if _looks_like_header(fields):
        return _header_format(path, first_no, fields, sep)
    rows = [_split(text, ",") for _, text in sample]
    width, _ = Counter(len(r) for r in rows).most_common(1)[0]
    rows_w = [r for r in rows if len(r) == width]
    disp = frozenset(ASTERISK_DISPOSITIONS)
    q850 = re.compile(Q850_SHAPE)
    if width in ASTERISK_LAYOUTS and _share(rows_w, 14, disp) >= 0.5:
        columns, what = ASTERISK_LAYOUTS[width]
        why = (
            f"no header; {width} comma-separated fields per line with Asterisk dispositions "
            f"(ANSWERED, NO ANSWER...) in field 15: Asterisk cdr_csv Master.csv with {what}"
        )
        return DetectedFormat("asterisk-csv", why, columns)
    if width in ASTERISK_CUSTOM_LAYOUTS and _share(rows_w, 13, disp) >= 0.5:
        columns, what = ASTERISK_CUSTOM_LAYOUTS[width]
        why = (
            f"no header; {width} fields per line with Asterisk dispositions in field 14 and a "
            f"caller id ('\"name\" <number>') first: Asterisk custom layout, {what}"
        )
        return DetectedFormat("asterisk-custom", why, columns)
    if width in FREESWITCH_LAYOUTS:
        index = 14 if width == 18 else 9
        if _share(rows_w, index, q850) >= 0.8 or _share(rows_w, index, KNOWN_Q850) >= 0.5:
            columns, what = FREESWITCH_LAYOUTS[width]
            why = (
                f"no header; {width} fields per line with Q.850 hangup causes (NORMAL_CLEARING...) "
                f"in field {index + 1}: FreeSWITCH mod_cdr_csv, {what}"
            )
            return DetectedFormat("freeswitch-csv", why, columns)
    raise CdrFormatError(
        f"{path}: cannot tell the format: no header line I recognise, {width} comma-separated "
        f"fields on most of the first {len(rows)} lines, and no Asterisk disposition or "
        f"FreeSWITCH hangup cause where those formats keep them. Known formats: "
        + "; ".join(f"{k} ({v})" for k, v in FORMAT_HELP.items())
        + ". Force one with --format NAME, or use csv-mapped with a column mapping."
    )


def layout_for(path: Path, fmt: str, mapping: ColumnMapping | None) -> DetectedFormat:
    """The layout to read ``path`` with, for ``fmt`` ("auto" or one of FORMATS)."""
    path = Path(path)
    if fmt == "auto" and mapping is not None:
        fmt = "csv-mapped"
    if fmt == "auto":
        return detect_format(path)
    if fmt not in FORMATS:
        raise CdrFormatError(f"unknown format {fmt!r}; use 'auto' or one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        return DetectedFormat("jsonl", "forced with --format jsonl", [], False, "", 0)
    sample = sample_lines(path)
    if fmt in HEADERLESS:
        layouts = HEADERLESS[fmt]
        if not sample:
            columns = layouts[max(layouts)][0]
            return DetectedFormat(fmt, f"forced with --format {fmt}", columns)
        width, _ = Counter(len(_split(t, ",")) for _, t in sample).most_common(1)[0]
        if width not in layouts:
            raise CdrFormatError(
                f"{path}: {fmt} files have {' or '.join(str(w) for w in layouts)} fields per line, "
                f"but most of the first lines have {width}"
            )
        columns, what = layouts[width]
        return DetectedFormat(fmt, f"forced with --format {fmt}; {width} fields: {what}", columns)
    if fmt == "csv-mapped" and mapping is not None and mapping.fields is not None:
        sep = mapping.separator or ","
        return DetectedFormat(
            fmt, "forced csv-mapped with the given field list", list(mapping.fields), False, sep
        )
    if not sample:
        raise CdrFormatError(f"{path}: {fmt} needs a header line, but the file has no lines")
    line_no, first = sample[0]
    sep = (mapping.separator if mapping else None) or _guess_separator(first)
    names = _split(first, sep)
    if fmt in ACC_FORMATS:
        lower = {n.strip().lower() for n in names}
        if not lower & {"callid", "call_id", "start_time", "time", "created"}:
            raise CdrFormatError(
                f"{path}: {fmt} needs a header line with acc column names (callid, sip_code, "
                f"time...); line {line_no} is {first[:120]!r}"
            )
    return DetectedFormat(
        fmt, f"forced with --format {fmt}; header on line {line_no}", names, True, sep, line_no
    )
