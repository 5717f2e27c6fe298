"""
xinetd-syntax configuration: pure parsing into frozen values, and a thin loader.
"""

from superd.config.errors import EX_CONFIG, ConfigError, Problem
from superd.config.model import Configuration, ServiceConfig

__all__ = ["EX_CONFIG", "ConfigError", "Configuration", "Problem", "ServiceConfig"]
