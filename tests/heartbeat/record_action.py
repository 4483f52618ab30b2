"""The fault matrix's action seam: append "<wall time> <state>" to $KISSTEST_ACTION_LOG.

Stands in for `systemctl start <state>.target`, which needs a booted systemd (the qemu lab runs
the real one).
"""

import os
import sys
import time

line = f"{time.time():.6f} {sys.argv[1]}\n".encode()
fd = os.open(os.environ["KISSTEST_ACTION_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
try:
    os.write(fd, line)
finally:
    os.close(fd)
