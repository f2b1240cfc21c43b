"""``python -m realm ...``: the same command line as the ``realm`` script."""

import sys

from realm.cli import main

sys.exit(main())
