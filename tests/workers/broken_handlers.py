"""A handler module that fails at import, as a typo in a user's module would: `handlers` and doctor name it."""

from workers import handles

BROKEN = 1 / 0


@handles("categorization")
def never(task: object) -> None:
    """Never registered: the module stops above."""
