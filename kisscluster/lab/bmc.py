"""The lab's stand-ins for the hardware a real pair fences with, reached from the guests over
their switch uplink (qemu user-net `guestfwd`, which runs a host command per connection):

* a BMC: `serve` answers one request from a guest, `{"password", "plug", "action"}` as a JSON
  line, by powering that lab node off (SIGKILL of its qemu, as a power cut), on, or telling its
  power state;
* its fence agent, run in the guests: `agent` speaks the fence-agents interface (name=value
  options on stdin, `action=off|on|reboot|status|monitor`; exit 0 done, for status 0 on and 2
  off, 1 failed), so kissclusterd drives it exactly as it drives `fence_ipmilan`;
* `relay PORT`: joins a guest's connection to the witness (`kissclusterd witness`) that the lab
  runs on the host's loopback.

Usage: python -m kisscluster.lab.bmc serve LAB_ROOT | agent | relay PORT
"""

import hmac
import json
import os
import selectors
import socket
import sys
from pathlib import Path

from kisscluster.lab.layout import BMC_ADDR, BMC_PORT, NODES, LabError, Layout
from kisscluster.lab.machine import Machine

PASSWORD_FILE = "bmc.secret"  # noqa: S105 - a file name
OFF, ON = "off", "on"


def power(layout: Layout, plug: str, action: str) -> str:
    """Act on lab node `plug`; its power state afterwards."""
    machine = Machine(layout, plug)
    if action == "off":
        machine.kill()
    elif action == "on" and machine.pid() is None:
        from kisscluster.lab.image import cached_image

        image = cached_image(layout)
        if image is None:
            raise LabError("no cached guest image to boot from")
        machine.start(image)
    return OFF if machine.pid() is None else ON


def serve(root: Path) -> int:
    """One request on stdin, its answer on stdout (the guest's connection)."""
    layout = Layout(root)
    try:
        request = json.loads(sys.stdin.readline())
        password = (layout.run_dir / PASSWORD_FILE).read_text(encoding="utf-8").strip()
        if not hmac.compare_digest(str(request.get("password", "")), password):
            raise LabError("wrong password")
        if request.get("plug") not in NODES or request.get("action") not in ("off", "on", "status"):
            raise LabError(f"bad request {request.get('plug')!r} {request.get('action')!r}")
        answer = {"power": power(layout, request["plug"], request["action"])}
    except (ValueError, OSError, LabError) as exc:
        answer = {"error": str(exc)}
    print(json.dumps(answer), flush=True)
    return 0


def _ask(options: dict[str, str], action: str) -> str:
    address = (options.get("ip", BMC_ADDR), int(options.get("ipport", BMC_PORT)))
    plug = options.get("plug") or options.get("port", "")
    request = {"password": options.get("password", ""), "plug": plug, "action": action}
    with socket.create_connection(address, timeout=30) as conn:
        conn.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(conn.makefile().readline())
    if "error" in answer:
        raise LabError(answer["error"])
    return str(answer["power"])


def agent() -> int:
    """The fence agent: name=value options on stdin, as the fence-agents read them."""
    options = dict(
        line.strip().split("=", 1) for line in sys.stdin if "=" in line and not line.startswith("#")
    )
    action = options.get("action", "reboot")
    try:
        if action in ("status", "monitor"):
            state = _ask(options, "status")
            print(f"Status: {state.upper()}")
            return 0 if state == ON or action == "monitor" else 2
        if action not in ("off", "on", "reboot"):
            raise LabError(f"unsupported action {action!r}")
        if action in ("off", "reboot") and _ask(options, "off") != OFF:
            raise LabError("still on after power-off")
        if action in ("on", "reboot") and _ask(options, "on") != ON:
            raise LabError("still off after power-on")
    except (OSError, ValueError, KeyError, LabError) as exc:
        print(f"Failed: {exc}", file=sys.stderr)
        return 1
    print("Success: " + {"off": "Powered OFF", "on": "Powered ON"}.get(action, "Rebooted"))
    return 0


def relay(port: int) -> int:
    """Copy between this process's stdin/stdout (the guest's connection) and 127.0.0.1:PORT."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as upstream:
        upstream.settimeout(None)
        selector = selectors.DefaultSelector()
        selector.register(0, selectors.EVENT_READ, "guest")
        selector.register(upstream, selectors.EVENT_READ, "witness")
        while True:
            for key, _ in selector.select():
                if key.data == "guest":
                    data = os.read(0, 4096)
                    if not data:
                        return 0
                    upstream.sendall(data)
                else:
                    data = upstream.recv(4096)
                    if not data:
                        return 0
                    os.write(1, data)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"] and len(argv) == 2:
        return serve(Path(argv[1]))
    if argv == ["agent"]:
        return agent()
    if argv[:1] == ["relay"] and len(argv) == 2:
        return relay(int(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
