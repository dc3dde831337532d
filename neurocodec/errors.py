"""The one exception type users of neurocodec need to catch."""


class NicError(Exception):
    """A problem with the user's input (file, image, options) explained in one line."""


class NicWarning(UserWarning):
    """Something was converted on the way in (16 bits to 8, CMYK to RGB): the file is still written."""
