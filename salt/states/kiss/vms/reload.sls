# One systemctl daemon-reload per run, only when kiss.vms changed a unit link or drop-in; the
# online verify timer started once it is first enabled (else it would wait for the next boot).
{%- from "kiss/map.jinja" import kiss with context %}

kiss-vms-reload-systemd-daemon-reload:
  cmd.run:
    - name: {{ kiss.systemctl }} daemon-reload
    - onchanges:
      - sls: kiss.vms.units

kiss-vms-reload-drbd-verify-timer-started:
  cmd.run:
    - name: {{ kiss.systemctl }} start kiss-drbd-verify.timer
    - onchanges:
      - file: kiss-vms-units-drbd-verify-timer-enabled
    - require:
      - cmd: kiss-vms-reload-systemd-daemon-reload
