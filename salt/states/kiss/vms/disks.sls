# Per active VM: its DRBD resource file (checked by drbdadm before it is written), then its LVs
# and - for a VM new on this node - DRBD metadata, bring-up and, on its primary_on node, the
# initial sync; for a VM that exists here, a new disk's volume or a grown disk
# (kisscluster.disks).
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
    - name: {{ name | json }}  # quoted: a VM may be called `off`
    - vm: {{ vm | json }}
    - cluster: {{ cluster | json }}
    - programs:
        lvs: {{ kiss.lvs }}
        vgs: {{ kiss.vgs }}
        lvcreate: {{ kiss.lvcreate }}
        lvextend: {{ kiss.lvextend }}
        drbdadm: {{ kiss.drbdadm }}
    - run_dir: {{ kiss.run_dir }}
    - root: {{ kiss.root or "/" }}
    - require:
      - file: kiss-vms-disks-{{ name }}-drbd-resource
{%- endfor %}
