"""numbering: E.164 normalization, country and number type, high-risk destinations.

Public API (imported lazily: ``tollguard.policy`` imports ``numbering.types``)::

    from tollguard.numbering.normalize import normalize_number, normalize_expr
    from tollguard.numbering.classify import NumberClassifier, NumberInfo, describe
    from tollguard.numbering.risk import RiskList, RiskEntry
    from tollguard.numbering.types import NumberType
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NumberClassifier": "classify",
    "NumberInfo": "classify",
    "describe": "classify",
    "normalize_number": "normalize",
    "normalize_expr": "normalize",
    "RiskEntry": "risk",
    "RiskList": "risk",
    "NumberType": "types",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tollguard.numbering' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tollguard.numbering.{module}"), name)
