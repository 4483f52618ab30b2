# Active VMs are enabled (wanted by all-vms.target); primary-vms.target wants the VMs whose
# primary_on is this node, or that kiss-migrate placed here (kisscluster/placement.py), and
# conflicts with the others. Disabled VMs are disabled, not stopped.
# kiss-drbd-verify.timer runs DRBD online verify of this node's VMs on the cluster's
# verify_schedule (kisscluster/onlineverify.py).
{%- from "kiss/map.jinja" import kiss with context %}
{%- set node = grains["id"] %}
{%- set vms = salt["pillar.get"]("kiss:vms", {}) %}
{%- set wants_dir = kiss.root ~ kiss.systemd_dir ~ "/all-vms.target.wants" %}
{%- for name in vms | sort %}

kiss-vms-units-{{ name }}-enabled:
  file.symlink:
    - name: {{ wants_dir }}/vm@{{ name }}.service
    # What `systemctl enable` writes (and the original KISScluster's `systemctl reenable` wrote).
    - target: {{ kiss.systemd_dir }}/vm@.service
    - makedirs: True
    - force: True
{%- endfor %}
{%- for name in salt["pillar.get"]("kiss:disabled_vms", {}) | sort %}

kiss-vms-units-{{ name }}-disabled:
  file.absent:
    - name: {{ wants_dir }}/vm@{{ name }}.service
{%- endfor %}
{%- set placed = salt["kiss.placed_here"](node, kiss.root ~ kiss.placement_file) %}

kiss-vms-units-primary-vms-target:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.systemd_dir }}/primary-vms.target.d/kisscluster-vms.conf
    - source: salt://kiss/templates/units/primary-vms-wants.conf.jinja
    - template: jinja
    - makedirs: True
    - mode: "0644"
    - context:
        node: {{ node | json }}
        wants: {{ placed.wants | json }}
        conflicts: {{ placed.conflicts | json }}
{%- set verify_units = salt["kiss.verify_units"](node, kiss) %}
{%- for kind in ["service", "timer"] %}

kiss-vms-units-drbd-verify-{{ kind }}:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.systemd_dir }}/kiss-drbd-verify.{{ kind }}
    - contents: {{ verify_units[kind] | json }}
    - makedirs: True
    - mode: "0644"
{%- endfor %}

kiss-vms-units-drbd-verify-timer-enabled:
  file.symlink:
    - name: {{ kiss.root }}{{ kiss.systemd_dir }}/timers.target.wants/kiss-drbd-verify.timer
    - target: ../kiss-drbd-verify.timer
    - makedirs: True
    - force: True
