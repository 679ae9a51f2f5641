"""Real-time limits: counters, reservations and blocks; the authorize decision.

``AuthorizeService`` answers "may this call go through, and for how long?" from a
precomputed per-account plan, cached number classification and rate lookups, and one
atomic check-and-reserve on a ``StateBackend`` (memory, memory+SQLite, or Redis).
"""
