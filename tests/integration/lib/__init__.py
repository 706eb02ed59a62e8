"""Helpers of gatehouse's integration tests, each in one place.

    net       ports chosen at run time, waiting for a port or a condition
    proc      temporary folders and stopping a child process by its PID
    config    the one writer of gatehouse.conf (and of users files)
    gateway   gatehoused and gatehousectl: Daemon, Gateway, ctl()
    clients   the line clients: RawClient, SmtpClient, ImapClient
    scripted  small scripted SMTP and IMAP servers, relays
    paths     where the sources and the build are
    pki       a throw-away test CA and its certificates

Beside this package: the real backends (Postfix, Dovecot) in ../backends.py,
which `./quickstart demo` also runs as a script; pam_wrapper and the other
PAM-only helpers in ../pamfix.py, the private slapd in ../slapdfix.py (both
also imported by bench/run); the pytest fixtures in ../conftest.py.
"""
