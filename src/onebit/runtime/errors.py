"""The exception a malformed, truncated, corrupted or hostile ``.onebit`` file raises."""

from __future__ import annotations

from onebit.errors import OnebitError

__all__ = ["FormatError"]


class FormatError(OnebitError, ValueError):
    """A ``.onebit`` file (or an in-memory graph) is not valid.

    Every check of the reader raises this exception with a message that names the field at fault
    and, where the user can act, the fix (re-export the model, upgrade onebit, ...). It subclasses
    ``ValueError`` so that callers that already catch ``ValueError`` keep working.
    """
