# Per active VM: /etc/vm/<vm>.conf, its qemu parameters from its template, rewritten every run.
{%- from "kiss/map.jinja" import kiss, cluster with context %}
{%- for name, vm in salt["pillar.get"]("kiss:vms", {}) | dictsort %}

kiss-vms-config-{{ name }}-qemu-parameters:
  file.managed:
    - name: {{ kiss.root }}{{ kiss.vm_conf_dir }}/{{ name }}.conf
    - contents: {{ salt["kiss.vm_config"](vm, cluster.keyboard, kiss) | json }}
    - makedirs: True
    - mode: "0644"
{%- endfor %}
