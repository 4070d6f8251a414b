"""Exceptions xray-lake raises into its callers (never into instrumented pipeline code)."""

from __future__ import annotations


class XrayLakeError(Exception):
    """Base class: catch this to handle every error xray-lake raises on purpose."""


class ConfigError(XrayLakeError, ValueError):
    """A setting is invalid; raised by `configure()` and by `Lake()` before any work starts."""


class DecorationError(XrayLakeError, TypeError):
    """A decorator was applied in a way that cannot work; raised at import time."""


class QueryError(XrayLakeError, ValueError):
    """A query names an unknown column, operator or table, or cannot be compiled."""


class LakeReadError(XrayLakeError):
    """The lake holds a file that cannot be read (corrupt, truncated, foreign schema)."""
