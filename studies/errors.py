"""The one kind of error `tune` shows as a single line: input it cannot use, with what to do instead."""


class UserInputError(ValueError):
    """Bad input (a space, a storage, a study name, a metric, a path); the message says how to fix it."""
