#!/usr/bin/env python3
"""Stands in for systemctl, lvs, lvremove and drbdadm of one test node, because this
host has no systemd as PID 1, no device-mapper and no DRBD module. Linked as <root>/bin/<program>;
logs every call to <root>/commands.log, keeps the node's LVs in <root>/lvs, reports the VM unit
active while <root>/running exists and the DRBD resource up until `drbdadm ... down`."""

import json
import sys
from pathlib import Path

me = Path(sys.argv[0])
program, root, args = me.name, me.parent.parent, sys.argv[1:]
with (root / "commands.log").open("a", encoding="utf-8") as log:
    log.write(json.dumps([program, *args]) + "\n")
lvs_file = root / "lvs"
lvs = set(lvs_file.read_text(encoding="utf-8").split()) if lvs_file.exists() else set()

if program == "systemctl" and args[:1] == ["is-active"]:
    state = "active" if (root / "running").exists() else "inactive"
    print(state)
    sys.exit(0 if state == "active" else 3)
if program == "lvs":
    rows = [{"lv_name": name, "lv_size": "33554432"} for name in sorted(lvs)]
    print(json.dumps({"report": [{"lv": rows}]}))
elif program == "drbdadm" and "role" in args:
    sys.exit(10 if (root / "drbd-down").exists() else 0)
elif program == "drbdadm" and "down" in args:
    (root / "drbd-down").touch()
elif program == "lvremove":
    lvs.discard(args[-1].split("/", 1)[1])
    lvs_file.write_text("\n".join(sorted(lvs)), encoding="utf-8")
