"""``python -m jaxloss.parity.twin`` (:func:`jaxloss.parity.twin.cli.main`)."""

import sys

from jaxloss.parity.twin.cli import main

if __name__ == "__main__":
    sys.exit(main())
