"""QtCore-only services: they run core jobs on workers and answer with signals.

Widgets call these and never the core's network, database or decoders directly.
"""
