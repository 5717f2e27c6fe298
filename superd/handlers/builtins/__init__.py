"""
superd's builtin services (echo, discard, chargen, daytime, time), served
in-process by native Twisted protocols, selected through one table in
``superd.handlers.builtins.registry``.
"""

__all__: list[str] = []
