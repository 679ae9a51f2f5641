"""detect: the detection engine and one module per detector (see docs/detection.md)."""

from tollguard.native import extend

extend(__path__, __name__)  # the compiled modules, when built and current

from tollguard.detect.alert import Alert, Evidence  # noqa: E402
from tollguard.detect.base import AccountContext, Detector, Finding  # noqa: E402
from tollguard.detect.books import EnforcementSummary  # noqa: E402
from tollguard.detect.engine import Engine, default_detectors  # noqa: E402
from tollguard.detect.signature import Priors, Signature  # noqa: E402

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
