"""The two ways scoring cannot start: a clip that cannot be read, a model that is not there. Both are user
input errors (`utils.errors.UserInputError`): the command line prints the message as one sentence, exit 1."""

from utils.errors import UserInputError


class AudioUnreadable(UserInputError, OSError):
    """An audio file that does not exist or cannot be decoded; the message names it."""


class ModelUnavailable(UserInputError, RuntimeError):
    """A scoring model that is not installed, not downloadable here, or not usable as asked; the message
    names it and says what to do."""


def detail(error: BaseException) -> str:
    """The first line of an underlying error, without its closing full stop, to quote inside a sentence."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(". ") if text else type(error).__name__
