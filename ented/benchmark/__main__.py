"""``python -m ented.benchmark``: the same as ``ented-benchmark``."""

import sys

from ented.cli.benchmark import main

sys.exit(main())
