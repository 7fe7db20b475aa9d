"""``python -m workers``: run one callback worker."""

import sys

from workers.worker import main

sys.exit(main())
