"""``python -m ented.restoration``: the ``ented-restore`` command line."""

import sys

from ented.restoration.cli import main

sys.exit(main())
