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
