"""
xinetd-syntax configuration: pure parsing into frozen values, and a thin loader.
"""

from superd.config.errors import ConfigError, Problem
from superd.config.model import Configuration, ServiceConfig

__all__ = ["ConfigError", "Configuration", "Problem", "ServiceConfig"]
