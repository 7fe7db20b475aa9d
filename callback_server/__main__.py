"""``python -m callback_server``: the command line (see :mod:`callback_server.cli`)."""

from callback_server.cli import main

main()
