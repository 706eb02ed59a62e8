"""Where the sources and the build are: $GH_SRCDIR (default: the checkout
this file is in) and $GH_BUILDDIR (default: _build/ in it); whether that
build has the sanitizers (./configure --enable-sanitizers)."""
import os
import re
import subprocess
from pathlib import Path

SRCDIR = Path(os.environ.get('GH_SRCDIR', Path(__file__).resolve().parents[3]))
BUILDDIR = Path(os.environ.get('GH_BUILDDIR', SRCDIR / '_build'))
GATEHOUSED = BUILDDIR / 'gatehoused'
GATEHOUSECTL = BUILDDIR / 'gatehousectl'
MODULE_DIR = BUILDDIR / 'modules' / 'all'  # every module, linked by make (all-local)


def _sanitized():
    try:
        makefile = (BUILDDIR / 'Makefile').read_text(errors='replace')
    except OSError:
        return False
    return re.search(r'^GH_SANITIZE_FLAGS = \S', makefile, re.M) is not None


# configured with --enable-sanitizers: ASan, LSan and UBSan check every run
# (lib.gateway reads their reports); valgrind cannot run such a build
SANITIZED = _sanitized()


def asan_runtime():
    """The shared ASan runtime gatehoused is linked with (gcc's libasan.so.N),
    which must come first in LD_PRELOAD when anything else is preloaded
    (pam_wrapper); None for a build without it (no sanitizers, or clang's
    runtime linked into the program)."""
    if not SANITIZED:
        return None
    out = subprocess.run(['ldd', str(GATEHOUSED)], capture_output=True, text=True).stdout
    m = re.search(r'^\s*libasan\.so\S* => (/\S+)', out, re.M)
    return m.group(1) if m else None
