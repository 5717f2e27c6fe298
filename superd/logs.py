"""
The stable names of superd's log observers for ``twistd --logger``.

Units and scripts say ``--logger superd.logs.json_stdout`` (or
``text_stdout``); the observers themselves live in ``superd.observe.logs``.
"""

from superd.observe.logs import json_stdout, text_stdout

__all__ = ["json_stdout", "text_stdout"]
