# What cannot live under the `root` prefix: the DRBD module and systemd's view of the units.
{%- from "kiss/map.jinja" import kiss with context %}

kiss-node-services-drbd-module-loaded:
  kmod.present:
    - name: {{ kiss.drbd_module }}

kiss-node-services-systemd-daemon-reload:
  cmd.run:
    - name: {{ kiss.systemctl }} daemon-reload
    - onchanges:
      - sls: kiss.node.files

# A running kissclusterd re-reads its config on SIGHUP (ExecReload); one that is not running
# reads it when it starts.
kiss-node-services-kissclusterd-reloaded:
  cmd.run:
    - name: {{ kiss.systemctl }} try-reload-or-restart kissclusterd.service
    - onchanges:
      - file: kiss-node-files-kissclusterd-conf
    - require:
      - cmd: kiss-node-services-systemd-daemon-reload

# /run/kvm now: systemd-tmpfiles would otherwise make it only at the next boot.
kiss-node-services-run-dir-created:
  cmd.run:
    - name: {{ kiss.systemd_tmpfiles }} --create {{ kiss.root }}{{ kiss.tmpfiles_dir }}/kisscluster.conf
    - creates: {{ kiss.run_dir }}
    - require:
      - user: kiss-node-packages-vm-user-present
      - file: kiss-node-files-tmpfiles-run-kvm
