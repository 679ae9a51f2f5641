"""Lines that could not be read: kept with file, line and reason, never dropped."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class QuarantinedLine:
    source_file: str
    line: int  # 1-based physical line in the file
    reason: str
    raw: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
