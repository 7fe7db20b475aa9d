"""``python -m workers``: run one callback worker."""

from workers.worker import main

main()
