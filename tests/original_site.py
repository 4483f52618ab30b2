"""A site of the original KISScluster (cmock/kisscluster) and what its Ansible role leaves on each
node, written as the original writes them: test support for tests/states/test_adopt_nodes.py.
Nothing here is the original's code; each format is derived from
reading it, and the file it comes from is named beside it:

* node/roles/kisscluster-vms/helpers/kisscluster-vm-inventory (Perl): blocks of 4 minors, extra
  disk n gets volume n and minor first + n, sizes lower-cased for Ansible's lvol, a VM whose file
  has a `disabled` key (any value) or no file is disabled; the cache `vm-config/<cluster>.yml`
  is YAML.pm's DumpFile of {vm, active_vm, disabled_vm}: keys sorted, each VM's hash shared by
  `vm` and one of the other two, hence anchors (&1) and aliases (*1), values plain.
* node/roles/kisscluster-vms/tasks/main.yml: LVs vmvg/<vm>_root and vmvg/<vm>_<disk> (lvol), per
  active VM /etc/drbd.d/<vm>.res (0444) and /etc/vm/<vm>.conf (0440), `systemctl reenable
  vm@<vm>.service`, links in primary-vms.target.wants/ (VMs primary here) and
  primary-vms.target.conflicts/ (the others) to /etc/systemd/system/vm@.service, the cache copied
  to /etc/vm/vms.yml; `systemctl disable` for disabled VMs (their other files stay).
* node/roles/kisscluster-vms/templates/drbd-vm.res.j2 and vm.conf.<template>.j2, rendered as
  Ansible renders (trim_blocks: a block tag's newline goes; the file's last newline stays).
* ansible/roles/kisscluster-install/templates/vm@.service.j2: the unit that runs qemu with them.
"""

from dataclasses import dataclass, field
from pathlib import Path

#: Ansible 1.x's default `ansible_managed`, as it renders for one file.
MANAGED = "Ansible managed: {} modified on 2016-03-01 12:00:00 by root on admin"
VG = "vmvg"
PORT_BASE = 7788
SYSTEMD = "/etc/systemd/system"

# vm@.service.j2 as kisscluster-install rendered it (its jinja comment line gone).
VM_UNIT = """\
# {managed}

[Unit]
Description= VM %i
Requires=drbd-resource@%i.service
After=drbd-resource@%i.service
#StopWhenUnneeded=true
Conflicts=no-vms.target

[Service]
User=kvm
Group=kvm
# needed so kiss-migrate runs as root
PermissionsStartOnly=true
# these are set here so they can be overriden in the config file
Environment=CPU=host
# TMP_QEMU_PARAMS should be read from /run/kvm/%i.conf for temporary
# parameters, e.g. for installation, or migration
Environment=TMP_QEMU_PARAMS=
EnvironmentFile=/etc/vm/%i.conf
EnvironmentFile=-/run/kvm/%i.conf
ExecStart=/usr/bin/env /usr/bin/qemu-system-x86_64 -enable-kvm -name %i \\
  -monitor unix:/run/kvm/%i.mon,server,nowait \\
  -serial unix:/run/kvm/%i.serial,server,nowait \\
  -usbdevice tablet \\
  -rtc base=${{RTC}} \\
  -cpu ${{CPU}} -smp ${{SMP}} -m ${{RAM}} \\
  -net bridge,br=${{BRIDGE}} -net nic,model=virtio,macaddr=${{MACADDR}} \\
  -vnc :${{VNCDISPLAY}} -k ${{KEYBOARDLANG}} \\
  $DRIVES $TMP_QEMU_PARAMS
ExecStartPost=/bin/rm -f /run/kvm/%i.conf
ExecStop=/bin/rm -f /run/kvm/%i.conf
ExecStop=/usr/sbin/kiss-vm-monitor %i powerdown
TimeoutStopSec=120
KillMode=control-group
Restart=on-failure
# qemu exit codes:
# poweroff -> 0
# panic -> just reboots, kvm doesn't exit (needs kernel.panic sysctl != 0)
TimeoutSec=300

[Install]
# installation of dependencies for primary-vms.target is done via kiss-configure
WantedBy=all-vms.target

# {managed}
"""


@dataclass(frozen=True)
class Disk:
    name: str
    size: str  # as the VM file has it


@dataclass(frozen=True)
class Vm:
    """One VM file of the original site. `disabled`: the text of its `disabled:` value, or None
    (no key); `set_up`: whether the original's role ever set it up (a VM disabled later keeps
    its LVs, resource and config on the nodes; one disabled from the start has nothing)."""

    name: str
    primary_on: str
    template: str
    root_disk_size: str
    more_disks: tuple[Disk, ...] = ()
    cpus: int = 1
    ram_megs: int = 512
    network_bridge: str = "br0"
    disabled: str | None = None
    set_up: bool = True

    @property
    def active(self) -> bool:
        return self.disabled is None  # the inventory's `exists $vm->{$g}->{disabled}`


@dataclass
class Site:
    """The original site: group_vars (cluster variables) and VMs in cache order from `first`."""

    cluster: str
    members: list[dict[str, str]]
    ping_addr: str
    vms: list[Vm]
    mac_addr_base: str = "02:00:c0:ff:ee"
    keyboard: str = "de"
    first_minor: int = 0
    minors: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.minors = {vm.name: self.first_minor + 4 * i for i, vm in enumerate(self.vms)}

    # -- the site repository -------------------------------------------------------------------

    def group_vars(self) -> str:
        lines = [
            f'# group vars for "{self.cluster}" cluster',
            f"cluster_name: {self.cluster}",
            "cluster_members:",
        ]
        for m in self.members:
            lines += [
                f"  - name: {m['name']}",
                f"    prod_addr: {m['prod_addr']}",
                f"    stor_addr: {m['stor_addr']}",
            ]
        lines += [
            "prod_if: eth0",
            "stor_if: eth1",
            "stor_mtu: 9000",
            f"ping_addr: {self.ping_addr}",
            "vmvg_part: /dev/md1",
            f"vnc_keyboard_lang: {self.keyboard}",
            f"mac_addr_base: {self.mac_addr_base}",
        ]
        return "\n".join(lines) + "\n"

    def vm_file(self, vm: Vm) -> str:
        lines = [
            f"name: {vm.name}",
            f"primary_on: {vm.primary_on}",
            f"template: {vm.template}",
            f"network_bridge: {vm.network_bridge}",
            f"ram_megs: {vm.ram_megs}",
            f"root_disk_size: {vm.root_disk_size}",
            f"cpus: {vm.cpus}",
        ]
        if vm.more_disks:
            lines.append("more_disks:")
            for disk in vm.more_disks:
                lines += [f"  - name: {disk.name}", f"    size: {disk.size}"]
        if vm.disabled is not None:
            lines.append(f"disabled: {vm.disabled}")
        return "\n".join(lines) + "\n"

    def record(self, vm: Vm) -> dict[str, object]:
        """The VM's hash in the Perl inventory after its run (sizes lower-cased, minors)."""
        minor = self.minors[vm.name]
        record: dict[str, object] = {
            "cpus": vm.cpus,
            "drbd_minor": minor,
            "name": vm.name,
            "network_bridge": vm.network_bridge,
            "primary_on": vm.primary_on,
            "ram_megs": vm.ram_megs,
            "root_disk_size": vm.root_disk_size.lower(),
            "template": vm.template,
            "more_disks": [
                {"drbd_minor": minor + n, "drbd_volume": n, "name": d.name, "size": d.size.lower()}
                for n, d in enumerate(vm.more_disks, start=1)
            ],
        }
        if vm.disabled is not None:
            record["disabled"] = vm.disabled
        return record

    def cache(self) -> str:
        """YAML.pm's DumpFile of the inventory's output: active_vm and disabled_vm first (sorted
        keys), each VM's hash anchored where it first appears and aliased in `vm`."""
        out = ["---"]
        anchors: dict[str, int] = {}
        for key, vms in (
            ("active_vm", [v for v in self.vms if v.active]),
            ("disabled_vm", [v for v in self.vms if not v.active]),
        ):
            out.append(f"{key}:" if vms else f"{key}: []")
            for vm in vms:
                anchors[vm.name] = len(anchors) + 1
                out.append(f"  - &{anchors[vm.name]}")
                out += _yaml_pm_mapping(self.record(vm), "    ")
        out.append("vm:")
        out += [f"  - *{anchors[vm.name]}" for vm in self.vms]
        return "\n".join(out) + "\n"

    def write(self, source: Path) -> Path:
        """The original's working copy (/srv/kiss-configure) under `source`."""
        (source / "group_vars").mkdir(parents=True)
        (source / "group_vars" / f"{self.cluster}.yml").write_text(self.group_vars())
        vm_dir = source / "vm-config" / self.cluster
        vm_dir.mkdir(parents=True)
        for vm in self.vms:
            (vm_dir / f"{vm.name}.yml").write_text(self.vm_file(vm))
        (source / "vm-config" / f"{self.cluster}.yml").write_text(self.cache())
        return source

    # -- what the role leaves on a node ----------------------------------------------------------

    def on_node(self) -> list[Vm]:
        """The VMs whose LVs, resource and config the nodes hold."""
        return [vm for vm in self.vms if vm.set_up]

    def lvs(self) -> dict[str, str]:
        """LV name -> the size lvol was given (lower-cased)."""
        found = {}
        for vm in self.on_node():
            found[f"{vm.name}_root"] = vm.root_disk_size.lower()
            found.update({f"{vm.name}_{d.name}": d.size.lower() for d in vm.more_disks})
        return found

    def resource(self, vm: Vm) -> str:
        """drbd-vm.res.j2 for `vm`."""
        minor = self.minors[vm.name]
        managed = MANAGED.format("drbd-vm.res.j2")
        out = [
            f"# {managed}",
            "#",
            f"# Guest config for {vm.name}",
            "",
            f"resource {vm.name} {{",
            "  volume 0 {",
            f"    disk /dev/{VG}/{vm.name}_root;",
            f"    device /dev/drbd_{vm.name}_root minor {minor};",
            "    meta-disk internal;",
            "  }",
            "",
        ]
        for n, disk in enumerate(vm.more_disks, start=1):
            out += [
                f"  volume {n} {{",
                f"    disk /dev/{VG}/{vm.name}_{disk.name};",
                f"    device /dev/drbd_{vm.name}_{disk.name} minor {minor + n};",
                "    meta-disk internal;",
                "  }",
            ]
        out.append("")
        for member in self.members:
            address = f"{member['stor_addr']}:{PORT_BASE + minor}"
            out += [f"  on {member['name']} {{", f"    address {address};", "  }", ""]
        out += ["}", "", f"# {managed}"]
        return "\n".join(out) + "\n"

    def vm_conf(self, vm: Vm) -> str:
        """vm.conf.<template>.j2 for `vm`."""
        minor = self.minors[vm.name]
        managed = MANAGED.format(f"vm.conf.{vm.template}.j2")
        rtc = "localtime" if vm.template == "windows" else "utc"
        out = [
            f"# {managed}",
            f"# Configuration for vm@.service for VM {vm.name}",
            f"SMP={vm.cpus}",
            f"RAM={vm.ram_megs}",
            f"BRIDGE={vm.network_bridge}",
            f"MACADDR={self.mac_addr_base}:{minor:x}",
            f"VNCDISPLAY={minor}",
            f"KEYBOARDLANG={self.keyboard}",
            f"RTC={rtc}",
        ]
        res = f"/dev/drbd/by-res/{vm.name}"
        extra = range(1, len(vm.more_disks) + 1)
        if vm.template == "gaia":
            out.append(f"DRIVES=-drive file={res}/0 \\")
            out += [f"  -drive file={res}/{n} \\" for n in extra]
            out.append("")
        elif vm.template == "virtio-blk":
            out += [
                "DRIVES=-device virtio-blk-pci,scsi=off,drive=drive0 \\",
                f"  -drive file={res}/0,id=drive0,if=none,aio=native,discard=on \\",
            ]
            for n in extra:  # sic: the original's "virtion"
                out += [
                    f"  -device virtion-blk-pci,scsi=off,drive=drive{n} \\",
                    f"  -drive file={res}/{n},id=drive{n},if=none,aio=native,discard=on \\",
                ]
            out.append("  -drive index=0,media=cdrom ")
        else:  # linux, windows
            out += [
                "DRIVES=-device virtio-scsi-pci,id=scsi -device scsi-hd,drive=sda \\",
                f"  -drive file={res}/0,id=sda,if=none,aio=native,discard=on \\",
            ]
            for n in extra:
                sd = "sd" + chr(97 + n)
                out += [
                    f"  -device scsi-hd,drive={sd} \\",
                    f"  -drive file={res}/{n},id={sd},if=none,aio=native,discard=on \\",
                ]
            out.append("  -drive index=0,media=cdrom ")
        return "\n".join(out) + f"\n# {managed}\n"

    def node_files(self) -> dict[str, tuple[str, int]]:
        """Path -> (text, mode) of the files the role (and the installed vm@.service) left."""
        files = {
            f"{SYSTEMD}/vm@.service": (
                VM_UNIT.format(managed=MANAGED.format("vm@.service.j2")),
                0o644,
            )
        }
        for vm in self.on_node():
            files[f"/etc/drbd.d/{vm.name}.res"] = (self.resource(vm), 0o444)
            files[f"/etc/vm/{vm.name}.conf"] = (self.vm_conf(vm), 0o440)
        files["/etc/vm/vms.yml"] = (self.cache(), 0o444)
        return files

    def node_links(self, node: str) -> dict[str, str]:
        """Link -> target: `systemctl reenable` and the primary-vms links of the active VMs."""
        links = {}
        target = f"{SYSTEMD}/vm@.service"
        for vm in self.vms:
            if vm.active and vm.set_up:
                unit = f"vm@{vm.name}.service"
                links[f"{SYSTEMD}/all-vms.target.wants/{unit}"] = target
                kind = "wants" if vm.primary_on == node else "conflicts"
                links[f"{SYSTEMD}/primary-vms.target.{kind}/{unit}"] = target
        return links

    def install(self, root: Path, node: str) -> None:
        """The node's files and links under `root` ("/" on a lab node)."""
        for path, (text, mode) in self.node_files().items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            target.chmod(mode)
        for path, link_target in self.node_links(node).items():
            link = root / path.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(link_target)


def _yaml_pm_mapping(record: dict[str, object], indent: str) -> list[str]:
    """A mapping as YAML.pm dumps it: sorted keys, plain values, a list of mappings indented
    two more, an empty list as []."""
    lines = []
    for key in sorted(record):
        value = record[key]
        if isinstance(value, list):
            if not value:
                lines.append(f"{indent}{key}: []")
                continue
            lines.append(f"{indent}{key}:")
            for item in value:
                inner = _yaml_pm_mapping(item, indent + "    ")
                lines.append(f"{indent}  - {inner[0].lstrip()}")
                lines += inner[1:]
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def example(
    members: list[dict[str, str]], ping_addr: str, sizes: str = "real", first_minor: int = 0
) -> Site:
    """An original site of 12 VMs: three disabled (one `disabled: true` set up earlier, one
    `disabled: true` never set up, one `disabled: no`, which the original disables too), legacy
    names (capitals and `_`), one named `off` (`no`, `yes` and `on` are DRBD keywords: drbdadm
    refuses such a resource, so no original site has one),
    several with extra disks, every original template (gaia among them). `sizes`: "real" (GiB,
    for LVM metadata only) or "small" (MiB, for LVs that exist). No name is one of kisscluster's
    example site (web, db, mail), so that the lab can hold both."""
    big, mid, small = ("20G", "100g", "2048") if sizes == "real" else ("16M", "12m", "8")
    n1, n2 = (m["name"] for m in members)
    vms = [
        Vm("www", n1, "linux", big, (Disk("var", mid),), cpus=2),
        Vm("Mail_Server", n2, "linux", big, (Disk("spool", small), Disk("log", small))),
        Vm("pg", n2, "virtio-blk", big),
        Vm("fw", n1, "gaia", small, (Disk("logs", small),)),
        Vm("win", n2, "windows", mid, (Disk("data", big),), ram_megs=2048),
        Vm("off", n1, "linux", small),  # YAML 1.1 reads it as false
        Vm("old", n1, "linux", small, disabled="true"),
        Vm("never", n2, "linux", small, disabled="true", set_up=False),
        Vm("parked", n2, "gaia", small, (Disk("d", small),), disabled="no"),
        Vm("files", n1, "linux", big, (Disk("a", mid), Disk("b", mid), Disk("c", small))),
        Vm("ci_runner", n2, "linux", small, (Disk("cache", small),)),
        Vm("dns", n1, "linux", small),
    ]
    return Site("legacy", members, ping_addr, vms, first_minor=first_minor)
