"""kisscluster's states: the parts of a VM skeleton that plain file states cannot express.

Each function reads its VM from pillar ``kiss`` by name; the decisions live in ``kisscluster``
(drbd, lvm, skeleton, vmconf). Order in every function: already right -> True; test mode ->
None with the changes it would make; act; confirm.
"""

import difflib
import os
import secrets
from pathlib import Path

try:
    from kisscluster import drbd as _drbd
    from kisscluster import paths as _paths
    from kisscluster import pillar as _pillar
    from kisscluster import skeleton as _skeleton
    from kisscluster import vmconf as _vmconf
    from kisscluster.atomic import write_atomic as _write_atomic

    HAS_KISSCLUSTER = True
except ImportError:
    HAS_KISSCLUSTER = False

__virtualname__ = "kiss"


def __virtual__():
    if not HAS_KISSCLUSTER:
        return (False, "the kisscluster package is not importable: pip install kisscluster")
    return __virtualname__


def _ret(name):
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def _vm(name):
    vms = __pillar__.get("kiss", {}).get("vms", {})
    if name not in vms:
        raise KeyError(f"VM {name}: not an active VM of pillar kiss:vms")
    return vms[name]


def _read(path):
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _managed_text(ret, path, text, what, check=None, mode=0o644):
    """Bring the file at ``path`` to ``text``; ``check(text)`` may raise ValueError to refuse."""
    path = Path(path)
    old = _read(path)
    if old == text and (path.stat().st_mode & 0o7777) == mode:
        ret["comment"] = f"{what}: {path} is up to date"
        return ret
    if old is None:
        diff = "new file"
    elif old == text:
        diff = f"mode {oct(path.stat().st_mode & 0o7777)} -> {oct(mode)}"
    else:
        diff = "".join(
            difflib.unified_diff(
                old.splitlines(keepends=True), text.splitlines(keepends=True), "old", "new"
            )
        )
    if check is not None:
        try:
            check(text)
        except ValueError as exc:
            ret["result"] = False
            ret["comment"] = f"{what}: {exc}"
            return ret
    ret["changes"] = {"diff": diff}
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{what}: would write {path}"
        return ret
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, text, mode)
    ret["comment"] = f"{what}: wrote {path}"
    return ret


def drbd_resource(name, path, parser):
    """
    Write the DRBD resource file of VM ``name`` (volume 0 = root, n = extra disk n) to ``path``,
    after the DRBD parser ``parser`` (``drbdadm -c FILE dump all``, no kernel module needed)
    accepted it. A rejected file fails the state with drbdadm's message and is not written.
    """
    ret = _ret(name)
    try:
        vm = _vm(name)
        cluster = __pillar__["kiss"]["cluster"]
        text = _drbd.render_resource(vm, cluster["members"], cluster["volume_group"])
    except (KeyError, ValueError) as exc:
        ret.update(result=False, comment=str(exc))
        return ret

    def check(candidate):
        try:
            _drbd.check_config(parser, candidate, str(path))
        except _drbd.DrbdConfigError as exc:
            raise ValueError(str(exc)) from exc

    return _managed_text(ret, path, text, f"VM {name}: DRBD resource", check)


def vm_config(name, path, run_dir, vnc_listen, qemu_machine, qemu_accel, qemu_cpu):
    """
    Write ``/etc/vm/<name>.conf``, the qemu parameters of VM ``name`` from its template
    (``templates/vm/<template>.conf.jinja``); regenerated every run, so template edits reach
    every VM.
    """
    ret = _ret(name)
    settings = {
        "run_dir": run_dir,
        "vnc_listen": vnc_listen,
        "qemu_machine": qemu_machine,
        "qemu_accel": qemu_accel,
        "qemu_cpu": qemu_cpu,
    }
    try:
        vm = _vm(name)
        keyboard = __pillar__["kiss"]["cluster"]["keyboard"]
        text = _vmconf.render(_paths.vm_templates_dir(), vm, keyboard, settings)
    except (KeyError, ValueError) as exc:
        ret.update(result=False, comment=str(exc))
        return ret
    return _managed_text(ret, path, text, f"VM {name}: qemu parameters")


def _run(argv):
    result = __salt__["cmd.run_all"](list(argv), python_shell=False, ignore_retcode=True)
    return result["retcode"], (result["stderr"] or result["stdout"]).strip()


def vm_disks(name, lvs, lvcreate, drbdadm):
    """
    The LVs and, for a VM new on this node, the DRBD setup of VM ``name``: create its missing
    LVs; only when this run creates the root LV also ``create-md`` on each new volume and
    ``adjust``, and on the VM's ``primary_on`` node the initial sync (``primary --force``, then
    secondary). Never shrinks or removes an LV; a size larger than the LV is reported.
    """
    ret = _ret(name)
    try:
        vm = _vm(name)
        kiss = __pillar__["kiss"]
        node = _pillar.local_member(kiss, __opts__["id"])["name"]
        volume_group = kiss["cluster"]["volume_group"]
        existing = __salt__["kiss.lvs"](volume_group, lvs)
        plan = _skeleton.plan(
            vm, node, volume_group, existing, _skeleton.Programs(lvcreate, drbdadm)
        )
    except Exception as exc:  # the state fails naming the VM, whatever broke
        ret.update(result=False, comment=f"VM {name}: {exc}")
        return ret
    if plan.notes:
        ret["warnings"] = list(plan.notes)
    if not plan.steps:
        ret["comment"] = "\n".join([f"VM {name}: LVs present", *plan.notes])
        return ret
    planned = {step.what: " ".join(step.argv) for step in plan.steps}
    if __opts__["test"]:
        ret.update(
            result=None,
            changes={"would": planned},
            comment="\n".join([f"VM {name}: would run {len(plan.steps)} step(s)", *plan.notes]),
        )
        return ret
    done = {}
    for step in plan.steps:
        code, output = _run(step.argv)
        if code != 0:
            ret.update(
                result=False,
                changes={"done": done} if done else {},
                comment=f"VM {name}: step '{step.what}' failed ({' '.join(step.argv)} exited "
                f"{code}): {output}",
            )
            return ret
        done[step.what] = " ".join(step.argv)
    after = __salt__["kiss.lvs"](volume_group, lvs, refresh=True)
    missing = [d["lv"] for d in vm["disks"] if d["lv"] not in after]
    ret["changes"] = {"done": done}
    if missing:
        ret.update(result=False, comment=f"VM {name}: LVs still missing after lvcreate: {missing}")
        return ret
    ret["comment"] = "\n".join([f"VM {name}: ran {len(done)} step(s)", *plan.notes])
    return ret


def daemon_reloaded(name, systemctl):
    """
    ``systemctl daemon-reload``; meant for ``onchanges`` on the unit states, so it runs once per
    run and only when a unit file or link changed.
    """
    ret = _ret(name)
    if __opts__["test"]:
        ret.update(result=None, changes={"daemon-reload": "would run"}, comment="would reload")
        return ret
    code, output = _run([systemctl, "daemon-reload"])
    if code != 0:
        ret.update(result=False, comment=f"{systemctl} daemon-reload exited {code}: {output}")
        return ret
    ret.update(changes={"daemon-reload": "ran"}, comment="systemd reloaded its units")
    return ret


def tmpfiles_created(name, config, systemd_tmpfiles):
    """
    The directory ``name`` that the tmpfiles entry ``config`` declares, created now with
    ``systemd-tmpfiles --create`` rather than at the next boot.
    """
    ret = _ret(name)
    if Path(name).is_dir():
        ret["comment"] = f"{name} exists"
        return ret
    ret["changes"] = {"created": name}
    if __opts__["test"]:
        ret.update(result=None, comment=f"would create {name} from {config}")
        return ret
    code, output = _run([systemd_tmpfiles, "--create", config])
    if code != 0 or not Path(name).is_dir():
        ret.update(
            result=False,
            changes={},
            comment=f"{systemd_tmpfiles} --create {config} exited {code}, {name} "
            f"{'present' if Path(name).is_dir() else 'missing'}: {output}",
        )
        return ret
    ret["comment"] = f"created {name} from {config}"
    return ret


def secret(name, nbytes=32):
    """
    A random shared secret at ``name`` (mode 0600), created only when the file is absent and
    never shown or overwritten: kiss-init copies the primary's secret to the peer.
    """
    ret = _ret(name)
    path = Path(name)
    if path.exists():
        mode = path.stat().st_mode & 0o7777
        if mode == 0o600:
            ret["comment"] = f"{path} exists, kept"
            return ret
        ret["changes"] = {"mode": f"{oct(mode)} -> 0o600"}
        if __opts__["test"]:
            ret.update(result=None, comment=f"would make {path} mode 0600")
            return ret
        os.chmod(path, 0o600)
        ret["comment"] = f"{path} made mode 0600"
        return ret
    ret["changes"] = {"created": f"{path} (mode 0600, content not shown)"}
    if __opts__["test"]:
        ret.update(result=None, comment=f"would create a random secret at {path}")
        return ret
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, secrets.token_hex(int(nbytes)) + "\n", mode=0o600)
    ret["comment"] = f"created a random secret at {path}"
    return ret
