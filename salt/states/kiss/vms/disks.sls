# Per active VM: its DRBD resource file (checked by drbdadm before it is written), then its LVs
# and - for a VM new on this node only - DRBD metadata, bring-up and, on its primary_on node,
# the initial sync.
{%- from "kiss/map.jinja" import kiss, cluster with context %}
{%- for name, vm in salt["pillar.get"]("kiss:vms", {}) | dictsort %}

kiss-vms-disks-{{ name }}-drbd-resource:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.drbd_dir }}/{{ name }}.res
    - contents: {{ salt["kiss.drbd_resource"](vm, cluster.members, cluster.volume_group) | json }}
    # drbdadm parses the candidate alone (no kernel module needed); Salt appends its path.
    - check_cmd: {{ kiss.drbdadm_parser }} dump all -c
    - makedirs: True
    - mode: "0644"

kiss-vms-disks-{{ name }}-lvs-and-drbd:
  kiss.vm_disks:
    - name: {{ name }}
    - vm: {{ vm | json }}
    - cluster: {{ cluster | json }}
    - lvs: {{ kiss.lvs }}
    - lvcreate: {{ kiss.lvcreate }}
    - drbdadm: {{ kiss.drbdadm }}
    - require:
      - file: kiss-vms-disks-{{ name }}-drbd-resource
{%- endfor %}
