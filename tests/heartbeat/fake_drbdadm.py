"""A stand-in for drbdadm at the one seam this host cannot cross (no DRBD module here): the
resource states live in the JSON file $KISSTEST_DRBD_STATE, `outdate` and `connect` change them
and append to $KISSTEST_DRBD_STATE.log the way the real commands would (outdate is refused on a
Primary or a connected resource; connect on one that is not StandAlone). Installed as an
executable by the fencing tests."""

import json
import os
import sys
from pathlib import Path


def main() -> int:
    command, resource = sys.argv[1], sys.argv[2]
    path = Path(os.environ["KISSTEST_DRBD_STATE"])
    states = json.loads(path.read_text())
    if resource not in states:
        print(f"{resource}: no such resource", file=sys.stderr)
        return 10
    state = states[resource]
    if command in ("role", "cstate", "dstate"):
        print(f"{state[command]}/Unknown" if command != "cstate" else state[command])
        return 0
    if command == "outdate":
        with open(f"{path}.log", "a") as log:
            log.write(f"outdate {resource}\n")
        if state["role"] == "Primary" or state["cstate"] == "Connected":
            print("State change failed: (-2) Need access to UpToDate data", file=sys.stderr)
            return 17
        state["dstate"] = "Outdated"
        path.write_text(json.dumps(states))
        return 0
    if command == "connect":
        with open(f"{path}.log", "a") as log:
            log.write(f"connect {resource}\n")
        if state["cstate"] != "StandAlone":
            print("Failure: (102) Local address(port) already in use.", file=sys.stderr)
            return 10
        state["cstate"] = "WFConnection"
        path.write_text(json.dumps(states))
        return 0
    print(f"fake drbdadm: {command} not supported", file=sys.stderr)
    return 20


if __name__ == "__main__":
    sys.exit(main())
