# What cannot live under the `root` prefix: the DRBD module and systemd's view of the units.
{%- from "kiss/map.jinja" import kiss with context %}

kiss-node-services-drbd-module-loaded:
  kmod.present:
    - name: {{ kiss.drbd_module }}

kiss-node-services-systemd-daemon-reload:
  kiss.daemon_reloaded:
    - name: kiss.node
    - systemctl: {{ kiss.systemctl }}
    - onchanges:
      - sls: kiss.node.files

# /run/kvm now: systemd-tmpfiles would otherwise make it only at the next boot.
kiss-node-services-run-dir-created:
  kiss.tmpfiles_created:
    - name: {{ kiss.run_dir }}
    - config: {{ kiss.root }}{{ kiss.tmpfiles_dir }}/kisscluster.conf
    - systemd_tmpfiles: {{ kiss.systemd_tmpfiles }}
    - require:
      - user: kiss-node-packages-vm-user-present
      - file: kiss-node-files-tmpfiles-run-kvm
