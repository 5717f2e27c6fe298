"""
The running daemon: the twistd entry point (``tap``), the service tree and
its assembly from a configuration, reload, the control socket, systemd
notifications, status snapshots and metrics.
"""

__all__: list[str] = []
