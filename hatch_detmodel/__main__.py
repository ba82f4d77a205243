"""``python -m hatch_detmodel VERB …``: the same command line as ``hatch-detmodel``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
