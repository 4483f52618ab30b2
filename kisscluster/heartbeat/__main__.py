import sys

from kisscluster.heartbeat.cli import main

sys.exit(main())
