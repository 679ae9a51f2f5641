"""detect: the detection engine and one module per detector (see docs/detection.md)."""

from tollguard.detect.alert import Alert, Evidence
from tollguard.detect.base import AccountContext, Detector, Finding
from tollguard.detect.engine import EnforcementSummary, Engine, default_detectors
from tollguard.detect.signature import Priors, Signature

__all__ = [
    "AccountContext",
    "Alert",
    "Detector",
    "EnforcementSummary",
    "Engine",
    "Evidence",
    "Finding",
    "Priors",
    "Signature",
    "default_detectors",
]
