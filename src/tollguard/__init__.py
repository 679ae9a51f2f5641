"""tollguard: voice-fraud management."""

__version__ = "0.1.0"
