"""DatasetError, and the two ways a fault's text is shortened to fit into one sentence."""

from __future__ import annotations

from utils.errors import UserInputError


class DatasetError(UserInputError, ValueError):
    """A dataset (or a file given for one) that cannot be used as it is; the message says where and what to do."""


def ellipsis(text: str, limit: int = 60) -> str:
    """`text`, cut to `limit` characters with '...' where it is longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_reason(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (its class name when it has none), cut to `limit` characters."""
    return ellipsis(" ".join(str(error).split()) or type(error).__name__, limit)
