# One systemctl daemon-reload per run, only when kiss.vms changed a unit link or drop-in.
{%- from "kiss/map.jinja" import kiss with context %}

kiss-vms-reload-systemd-daemon-reload:
  cmd.run:
    - name: {{ kiss.systemctl }} daemon-reload
    - onchanges:
      - sls: kiss.vms.units
