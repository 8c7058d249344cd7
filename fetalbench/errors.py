"""The one exception type a user sees: a problem they can fix, said in one line."""


class FetalbenchError(Exception):
    """A problem with the user's input or environment.

    The message names the problem and the fix; the command line prints it as one line and exits
    with a non-zero status instead of showing a traceback.
    """
