"""Where the sources and the build are: $GH_SRCDIR (default: the checkout
this file is in) and $GH_BUILDDIR (default: _build/ in it)."""
import os
from pathlib import Path

SRCDIR = Path(os.environ.get('GH_SRCDIR', Path(__file__).resolve().parents[3]))
BUILDDIR = Path(os.environ.get('GH_BUILDDIR', SRCDIR / '_build'))
GATEHOUSED = BUILDDIR / 'gatehoused'
GATEHOUSECTL = BUILDDIR / 'gatehousectl'
MODULE_DIR = BUILDDIR / 'modules' / 'all'  # every module, linked by make (all-local)
