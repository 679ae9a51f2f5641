"""Priors files: what ``tollguard calibrate`` writes and ``[defaults] priors`` names.

A priors file is JSON: ``{"tollguard_priors": 1, "calibration": {...}, "priors": {...}}``
where ``priors`` is ``Priors.to_dict()`` and ``calibration`` says what history it was
learned from (kept for the reader; the engine ignores it). A bare ``Priors.to_dict()``
object (what the Python example in docs/detection.md writes) is read as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tollguard.detect.signature import Priors
from tollguard.policy import Policy

FORMAT_VERSION = 1
_HINT = "write it with `tollguard calibrate HISTORY... --policy POLICY --out FILE`"

# (resolved path, mtime_ns) -> priors: engines are made per scan, per ingest process and
# per API worker, and should not parse the same file each time
_cache: dict[tuple[str, int], Priors] = {}


def write_priors(path: Path, priors: Priors, calibration: dict[str, Any]) -> None:
    doc = {"tollguard_priors": FORMAT_VERSION, "calibration": calibration}
    doc["priors"] = priors.to_dict()
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def read_priors(path: Path) -> Priors:
    """Read a priors file; a missing or malformed one is a ``ValueError`` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"priors file {path}: {exc.strerror or exc}; {_HINT}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"priors file {path} is not JSON ({exc}); {_HINT}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"priors file {path} holds no JSON object; {_HINT}")
    version = doc.get("tollguard_priors")
    if version is not None and version != FORMAT_VERSION:
        raise ValueError(
            f"priors file {path} has format {version!r}, this tollguard reads "
            f"{FORMAT_VERSION}; {_HINT}"
        )
    # a versioned file keeps the priors under "priors"; a bare one is the priors itself
    fields = doc.get("priors") if version is not None else doc
    if not isinstance(fields, dict):
        raise ValueError(f"priors file {path} has no 'priors' object; {_HINT}")
    try:
        return Priors.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"priors file {path} is not valid: {exc}; {_HINT}") from exc


def policy_priors(policy: Policy) -> Priors | None:
    """The priors named by the policy's ``[defaults] priors`` (None when not set)."""
    name = policy.defaults.priors
    if not name:
        return None
    path = policy.resolve_path(name)
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        return read_priors(path)  # raises the clear error
    priors = _cache.get(key)
    if priors is None:
        if len(_cache) > 16:
            _cache.clear()
        priors = _cache[key] = read_priors(path)
    return priors
