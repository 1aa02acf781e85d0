"""``python -m resilience.deadletter list | show ID | replay | drop ID`` (see ``_cli``)."""

import sys

from resilience.deadletter._cli import main

sys.exit(main())
