"""The report of kisscluster.overview.assess as the operator's tables."""

from typing import Any

from kisscluster.overview.assess import describe_volume


def _table(rows: list[list[str]]) -> list[str]:
    """Rows as left-aligned columns under the first; a shorter row's last cell runs on."""
    full = len(rows[0])
    widths = [max(len(r[i]) for r in rows if i < len(r) - 1 or len(r) == full) for i in range(full)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)), r[-1]]).rstrip()
        for r in rows
    ]


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s"


def node_row(node: dict[str, Any]) -> list[str]:
    if not node["reachable"]:
        return [node["name"], f"unreachable: {node['error']}"]
    daemon = node.get("kissclusterd")
    target = "?" if node["units_error"] else node["target"] or "none"
    if node["name"] in node.get("maintenance", []):
        target += " (maintenance)"
    if daemon is None:
        return [node["name"], target, "no status", "", "", "", ""]
    state = daemon["state"] or "undecided"
    if daemon["computed"] != daemon["state"]:
        state += f"->{daemon['computed']}"
    if daemon["stale"]:
        state += f" (stale {daemon['age']:.0f}s)"
    peer = daemon["peer_priority"]
    ping = daemon["last_ping"]
    if ping is None:
        switch = "-"
    elif ping["ok"]:
        switch = "reply"
    else:
        switch = f"silent {daemon['switch_silent_for']:.0f}s"
    beats = daemon["heartbeat_age"]
    return [
        node["name"],
        target,
        state,
        f"{daemon['own_priority']}/{'-' if peer is None else peer}",
        _age(beats.get("stor")),
        _age(beats.get("prod")),
        switch,
    ]


def _where(vm: dict[str, Any]) -> str:
    if len(vm["runs_on"]) == 2:
        return "BOTH"
    if vm["runs_on"]:
        return str(vm["runs_on"][0])
    if vm["disabled"]:
        return "-"
    return f"? ({' '.join(vm['unknown_on'])} unknown)" if vm["unknown_on"] else "neither"


def vm_rows(vm: dict[str, Any], nodes: list[dict[str, Any]], here: str) -> list[list[str]]:
    """The VM's line, and one more for each further volume: DRBD as the node that runs the VM
    sees it, else as this node does."""
    units = [vm["units"].get(n["name"]) or "?" for n in nodes]
    notes = (["disabled"] if vm["disabled"] else []) + vm["notes"]
    seen = next((n for n in (*vm["runs_on"], here, *vm["volumes"]) if n in vm["volumes"]), None)
    volumes = vm["volumes"].get(seen, [])
    cells = [f"{v['volume']}: {describe_volume(v)}" for v in volumes] or ["-"]
    first = [vm["name"], vm["home"] or "-", _where(vm), *units, "; ".join(notes), cells[0]]
    blanks = [""] * (len(first) - 1)
    return [first] + [[*blanks, cell] for cell in cells[1:]]


def render(report: dict[str, Any]) -> str:
    nodes = report["nodes"]
    count = len(report["problems"])
    lines = [f"kiss-overview on {report['here']}: {report['health']}"
             + (f" ({count} problem{'s' if count != 1 else ''})" if count else ""), ""]  # fmt: skip
    header = ["NODE", "TARGET", "KISSCLUSTERD", "PRIORITY", "HB STOR", "HB PROD", "SWITCH"]
    lines += _table([header] + [node_row(n) for n in nodes])
    if report["vms"]:
        names = [n["name"] for n in nodes]
        header = ["VM", "HOME", "RUNS ON", *names, "NOTE", "DRBD (where it runs, else here)"]
        rows = [row for vm in report["vms"] for row in vm_rows(vm, nodes, report["here"])]
        lines += ["", *_table([header, *rows])]
    if report["problems"]:
        lines += ["", "Problems:", *(f"  {p}" for p in report["problems"])]
    return "\n".join(lines)
