"""Errors whose message is meant for the user: the CLI prints them as one line and exits 1."""


class UserError(ValueError):
    pass
