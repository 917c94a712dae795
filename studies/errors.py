"""The one kind of error `tune` shows as a single line: input it cannot use, with what to do instead."""


class UserInputError(ValueError):
    """Bad input (a space, a storage, a study name, a metric, a path); the message says how to fix it."""


class TrialsInterrupted(Exception):
    """A run that ended with trials of its own unfinished (``--time-budget`` ran out): what it stored is kept, and
    the message names the ``tune resume`` command that continues them. Not an error of input: ``tune`` exits 3."""
