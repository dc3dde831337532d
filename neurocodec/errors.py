"""The one exception type users of neurocodec need to catch."""


class NicError(Exception):
    """A problem with the user's input (file, image, options) explained in one line."""
