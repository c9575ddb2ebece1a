"""``python -m hessketch``: the ``hessketch`` command (:mod:`hessketch.cli`)."""

import sys

from hessketch.cli import main

sys.exit(main())
