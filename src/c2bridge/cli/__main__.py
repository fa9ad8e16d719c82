"""``python -m c2bridge.cli ...``: the same as the ``c2bridge`` console script."""
import sys

from c2bridge.cli import main

sys.exit(main())
