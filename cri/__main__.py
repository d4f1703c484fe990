"""``python -m cri`` runs the same program as the ``crishim`` console script."""

from __future__ import annotations

import sys

from cri.cli import main

sys.exit(main())
