"""``python -m miniqmt_lab``: the ``miniqmt-lab`` command."""

import sys

from miniqmt_lab.cli import main

sys.exit(main())
