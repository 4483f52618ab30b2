"""kissclusterd's words to systemd and the journal: sd_notify(3) and the log's priorities."""

import logging
import os
import socket
import sys

log = logging.getLogger("kissclusterd")


def notify(message: str) -> None:
    """sd_notify(3): one datagram to $NOTIFY_SOCKET, if systemd gave us one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], exc)


SYSLOG_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority, which journald reads from a stream."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{SYSLOG_PRIORITIES.get(record.levelno, 2)}>{super().format(record)}"


def configure_logging() -> None:
    """Plain lines on stderr; with journald (JOURNAL_STREAM set), <N> priority prefixes."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
