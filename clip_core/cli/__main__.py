"""``python -m clip_core.cli``: the ``triclip`` command."""

import sys

from clip_core.cli import main

sys.exit(main())
