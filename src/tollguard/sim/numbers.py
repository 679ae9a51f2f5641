"""Phone numbers the simulator dials: templates per kind of destination, E.164 <-> dialed."""

from __future__ import annotations

from random import Random

# Two-digit Dutch area codes (national number 0AA BBBBBBB); subscriber numbers start 2-8.
NL_AREAS: tuple[str, ...] = (
    "10", "13", "15", "20", "23", "24", "26", "30", "33", "35", "36", "38", "40",
    "43", "45", "46", "50", "53", "55", "58", "70", "71", "72", "73", "74", "75", "76", "77", "78",
)  # fmt: skip

# "X" is a random digit. All templates give numbers phonenumbers considers valid.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "NL_MOBILE": ("+3161XXXXXXX", "+3162XXXXXXX", "+3163XXXXXXX", "+3164XXXXXXX", "+3165XXXXXXX"),
    "NL_TOLLFREE": ("+31800XXXX", "+31800XXXXXXX"),
    "NL_NONGEO": ("+3185XXXXXXX", "+3188XXXXXXX"),
    "NL_PREMIUM": ("+31900XXXXXXX", "+31906XXXXXXX", "+31900XXXX"),
    "DE": ("+4930XXXXXXXX", "+4989XXXXXXX", "+4940XXXXXXX", "+49211XXXXXXX", "+4969XXXXXXXX"),
    "BE": ("+3225XXXXXX", "+3232XXXXXX", "+3292XXXXXX", "+32475XXXXXX"),
    "FR": ("+331XXXXXXXX", "+334XXXXXXXX", "+3361XXXXXXX"),
    "GB": ("+44207XXXXXXX", "+44161XXXXXXX", "+447400XXXXXX"),
    "ES": ("+3491XXXXXXX", "+3493XXXXXXX"),
    "IT": ("+3902XXXXXXXX", "+3906XXXXXXXX"),
    "PL": ("+4822XXXXXXX", "+4861XXXXXXX"),
    "US": ("+1212XXXXXXX", "+1415XXXXXXX", "+1312XXXXXXX"),
    "JP": ("+813XXXXXXXX", "+816XXXXXXXX"),
    "BR": ("+55119XXXXXXXX", "+55213XXXXXXX"),
    "RO": ("+4072XXXXXXX", "+4074XXXXXXX"),
    "TL": ("+67077XXXXXX", "+67078XXXXXX", "+67073XXXXXX"),
    "SO": ("+25261XXXXXXX", "+25263XXXXXXX"),
    "ZW": ("+26377XXXXXXX", "+26371XXXXXXX"),
    "SAT_881": ("+8816XXXXXXXX",),
    "SAT_882": ("+88216XXXXXXX",),
}

EU_COUNTRIES: tuple[str, ...] = ("DE", "BE", "FR", "GB", "ES", "IT", "PL")


def fill(template: str, rng: Random) -> str:
    out = []
    first = True
    for ch in template:
        if ch == "X":
            # the first random digit avoids 0/1 so the number stays in an assigned block
            out.append(str(rng.randint(2, 9) if first else rng.randint(0, 9)))
            first = False
        else:
            out.append(ch)
    return "".join(out)


def number(kind: str, rng: Random) -> str:
    """A random E.164 number of a kind: a key of TEMPLATES or "NL_FIXED"."""
    if kind == "NL_FIXED":
        return nl_fixed(rng)
    return fill(rng.choice(TEMPLATES[kind]), rng)


def nl_fixed(rng: Random, area: str | None = None) -> str:
    area = area or rng.choice(NL_AREAS)
    return f"+31{area}{rng.randint(2, 8)}{rng.randint(0, 999999):06d}"


def did_block(rng: Random, size: int) -> list[str]:
    """A block of consecutive Dutch geographic numbers (the account's DIDs)."""
    area = rng.choice(NL_AREAS)
    width = 1 if size <= 10 else 2 if size <= 100 else 3
    base = rng.randint(2, 8) * 10**6 + rng.randint(0, 10 ** (6 - width) - 1) * 10**width
    return [f"+31{area}{base + i:07d}" for i in range(size)]


def dialed(e164: str) -> str:
    """How a Dutch PBX user dials the number: 0 + national for NL, 00 + digits abroad."""
    if e164.startswith("+31"):
        return "0" + e164[3:]
    return "00" + e164[1:]


def national(e164: str) -> str:
    """How a Dutch switch writes a Dutch caller id (0 + national); others as E.164."""
    if e164.startswith("+31"):
        return "0" + e164[3:]
    return e164
