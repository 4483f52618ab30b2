# Per active VM: /etc/vm/<vm>.conf, its qemu parameters from its template, rewritten every run.
{%- from "kiss/map.jinja" import kiss with context %}
{%- for name in salt["pillar.get"]("kiss:vms", {}) | sort %}

kiss-vms-config-{{ name }}-qemu-parameters:
  kiss.vm_config:
    - name: {{ name }}
    - path: {{ kiss.root }}{{ kiss.vm_conf_dir }}/{{ name }}.conf
    - run_dir: {{ kiss.run_dir }}
    - vnc_listen: {{ kiss.vnc_listen }}
    - qemu_machine: {{ kiss.qemu_machine }}
    - qemu_accel: {{ kiss.qemu_accel }}
    - qemu_cpu: {{ kiss.qemu_cpu }}
{%- endfor %}
