"""cdr: the normalized call record and the readers of each switch's CDR format."""

from tollguard.native import extend

extend(__path__, __name__)  # the compiled call record, when built and current
