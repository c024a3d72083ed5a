"""``python -m conformance [options]`` is ``triclip conformance [options]``."""

import sys

from clip_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["conformance", *sys.argv[1:]]))
