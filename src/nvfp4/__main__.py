"""``python -m nvfp4 ...`` is the ``nvfp4`` command (see ``nvfp4.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
