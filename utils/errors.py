"""The one base class for "a user's input is wrong": a file, a value or a folder the user gave. The message
names it and says what to do; the CLI prints it as one sentence and exits 1, the WebUI shows it. Anything else
(a RuntimeError, out of memory) is a bug or a fault and is shown as such.

Each error class of the tool that means bad input derives from UserInputError as well as from the built-in
class it always had (ValueError for most), so `except ValueError` elsewhere keeps working."""


class UserInputError(Exception):
    """Bad input from the user; the message names the file or value and the fix."""


class InvalidValue(UserInputError, ValueError):
    """A value (an option, a language code) that is not allowed; the message names it."""


class RunError(UserInputError, ValueError):
    """A training start that cannot go ahead (a locked or unwritable run folder, a vocabulary that does not fit,
    too little disk space); the message says why and what to do."""
