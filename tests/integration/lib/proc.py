"""Child processes and the folders they work in."""
import os
import signal
import subprocess
import tempfile
from pathlib import Path


def make_tmpdir(prefix='gh-'):
    """A temp dir in /tmp that the daemons' unprivileged users can traverse
    (not pytest's tmp_path: /tmp/pytest-of-root is 0700)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir='/tmp'))
    os.chmod(d, 0o755)
    return d


def stop_process(proc, timeout=10.0):
    """SIGTERM to proc (a Popen) if it still runs, SIGKILL if it has not
    exited `timeout` seconds later; its exit code (None for no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
