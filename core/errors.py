"""The one error type for bad input."""
from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message, one line, names the input and what is wrong.

    A ValueError, so that library code raising it reads like any other bad-value error, and the
    entry points (core.cli.app) turn it into `error: <message>` and exit status 2.
    """
