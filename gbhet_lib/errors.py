"""The root of gbhet's error tree: every error the library raises on purpose derives from :class:`GbhetError`.

A caller (or the command line) can ``except GbhetError`` to catch what gbhet reports about a user's data,
parameters or environment, while programming errors (``TypeError`` from a bug, ``KeyboardInterrupt``) pass through.
The concrete classes keep their older bases too (``ValueError``, ``RuntimeError``, ``FileNotFoundError``) so code
that caught those still works.
"""
from __future__ import annotations


class GbhetError(Exception):
    """Base class of every error gbhet raises about input, parameters, data or a failed stage."""


class UsageError(GbhetError, ValueError):
    """A bad parameter or flag: the command line reports it in one line and exits with status 2."""
