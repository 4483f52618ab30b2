# Per active VM: its DRBD resource file (checked by drbdadm), then its LVs and - for a VM new on
# this node only - DRBD metadata, bring-up and, on its primary_on node, the initial sync.
{%- from "kiss/map.jinja" import kiss with context %}
{%- for name in salt["pillar.get"]("kiss:vms", {}) | sort %}

kiss-vms-disks-{{ name }}-drbd-resource:
  kiss.drbd_resource:
    - name: {{ name }}
    - path: {{ kiss.root }}{{ kiss.drbd_dir }}/{{ name }}.res
    - parser: {{ kiss.drbdadm_parser }}

kiss-vms-disks-{{ name }}-lvs-and-drbd:
  kiss.vm_disks:
    - name: {{ name }}
    - lvs: {{ kiss.lvs }}
    - lvcreate: {{ kiss.lvcreate }}
    - drbdadm: {{ kiss.drbdadm }}
    - require:
      - kiss: kiss-vms-disks-{{ name }}-drbd-resource
{%- endfor %}
