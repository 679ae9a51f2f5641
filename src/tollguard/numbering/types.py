"""Number types tollguard distinguishes (names follow phonenumbers' PhoneNumberType)."""

from __future__ import annotations

from enum import StrEnum


class NumberType(StrEnum):
    FIXED_LINE = "FIXED_LINE"
    MOBILE = "MOBILE"
    FIXED_LINE_OR_MOBILE = "FIXED_LINE_OR_MOBILE"
    TOLL_FREE = "TOLL_FREE"
    PREMIUM_RATE = "PREMIUM_RATE"
    SHARED_COST = "SHARED_COST"
    VOIP = "VOIP"
    PERSONAL_NUMBER = "PERSONAL_NUMBER"
    PAGER = "PAGER"
    UAN = "UAN"
    VOICEMAIL = "VOICEMAIL"
    SATELLITE = "SATELLITE"  # international networks (+881, +882, +883, +870 ...)
    SHORT_CODE = "SHORT_CODE"  # internal extensions and service codes, not E.164
    UNKNOWN = "UNKNOWN"
