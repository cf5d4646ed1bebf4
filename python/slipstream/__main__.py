"""``python -m slipstream`` and the ``slipstream`` console script: the Rust command line."""

import signal
import sys

from . import _native


def main() -> None:
    """Run the ``slipstream`` command line with ``sys.argv`` and exit with its status."""
    # The work runs in Rust with the GIL released, where Python's own SIGINT handler never
    # gets to run: let Ctrl-C stop the process the ordinary way.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_native.cli_main(["slipstream", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
