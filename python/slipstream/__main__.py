"""``python -m slipstream`` and the ``slipstream`` console script: the Rust command line."""

import signal
import sys

from . import _native
from ._cuda import point_at_nvjpeg


def main() -> None:
    """Run the ``slipstream`` command line with ``sys.argv`` and exit with its status."""
    # The work runs in Rust with the GIL released, where Python's own SIGINT handler never
    # gets to run: let Ctrl-C stop the process the ordinary way.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # `demo` and `info` look for nvJPEG as the loader does: in the nvidia-nvjpeg wheel first.
    point_at_nvjpeg()
    sys.exit(_native.cli_main(["slipstream", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
