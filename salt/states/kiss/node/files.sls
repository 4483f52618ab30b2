# The files of a node, all under the `root` prefix: units and targets, DRBD's global config,
# /run/kvm tmpfiles, the qemu bridge ACL, kissclusterd's config and secret.
{%- from "kiss/map.jinja" import kiss, cluster with context %}
{%- set systemd_dir = kiss.root ~ kiss.systemd_dir %}
{%- for unit in ["vm@.service", "drbd-resource@.service", "kissclusterd.service",
                 "all-vms.target", "primary-vms.target", "no-vms.target", "manual-vms.target"] %}

kiss-node-files-unit-{{ unit }}:
  file.managed:
    - name: {{ systemd_dir }}/{{ unit }}
    - source: salt://kiss/templates/units/{{ unit }}.jinja
    - template: jinja
    - makedirs: True
    - mode: "0644"
    - context:
        kiss: {{ kiss | json }}
{%- endfor %}

kiss-node-files-unit-kissclusterd-enabled:
  file.symlink:
    - name: {{ systemd_dir }}/multi-user.target.wants/kissclusterd.service
    - target: ../kissclusterd.service
    - makedirs: True
    - force: True

# Every DRBD resource up at boot on both nodes, so the node not running a VM stays in sync.
kiss-node-files-unit-drbd-enabled:
  file.symlink:
    - name: {{ systemd_dir }}/multi-user.target.wants/drbd.service
    - target: /lib/systemd/system/drbd.service
    - makedirs: True
    - force: True

kiss-node-files-drbd-global-common:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.drbd_dir }}/global_common.conf
    - source: salt://kiss/templates/node/global_common.conf.jinja
    - template: jinja
    - makedirs: True
    - mode: "0644"
    - context:
        kiss: {{ kiss | json }}

kiss-node-files-drbd-module-load:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.modules_load_dir }}/kisscluster-drbd.conf
    - source: salt://kiss/templates/node/modules-load.conf.jinja
    - template: jinja
    - makedirs: True
    - mode: "0644"
    - context:
        kiss: {{ kiss | json }}

kiss-node-files-tmpfiles-run-kvm:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.tmpfiles_dir }}/kisscluster.conf
    - source: salt://kiss/templates/node/tmpfiles.conf.jinja
    - template: jinja
    - makedirs: True
    - mode: "0644"
    - context:
        kiss: {{ kiss | json }}

kiss-node-files-qemu-bridge-acl:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.qemu_bridge_conf }}
    - source: salt://kiss/templates/node/bridge.conf.jinja
    - template: jinja
    - makedirs: True
    - mode: "0644"
    - context:
        bridges: {{ salt["kiss.bridges"]() | json }}

# qemu-bridge-helper must be setuid root for VMs running as {{ kiss.vm_user }} to join a bridge.
kiss-node-files-qemu-bridge-helper-setuid:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.qemu_bridge_helper }}
    - create: False
    - replace: False
    - user: root
    - group: kvm
    - mode: "4750"

# Checked by the daemon's own loader before it is written; kiss.node.services reloads the daemon.
kiss-node-files-kissclusterd-conf:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.kissclusterd_conf }}
    - contents: {{ salt["kiss.kissclusterd_conf"](cluster, kiss.heartbeat) | json }}
    - check_cmd: {{ kiss.kissclusterd }} check-config --config
    - makedirs: True
    - mode: "0644"

# A random secret, created when absent and never shown or replaced: kiss-init copies the
# primary's to the peer.
kiss-node-files-kissclusterd-secret:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.heartbeat.secret_file }}
    - contents: {{ salt["random.get_str"](64, chars="0123456789abcdef") | json }}
    - replace: False
    - show_changes: False
    - makedirs: True
    - mode: "0600"
