"""Errors a user can cause and fix, under one common base (torch-free, import-light)."""

from __future__ import annotations

__all__ = ["OnebitError", "UserError"]


class OnebitError(Exception):
    """Base of every error onebit raises for something the user can fix."""


class UserError(OnebitError):
    """A user error the command line reports in one line with exit code 2."""
