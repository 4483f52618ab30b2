{#- A stand-in for kiss.vms that only writes files under the node's root (kiss:cluster:lookup:root):
    which commit it applied and one file per active VM. It fails on purpose while the file
    <root>/fail-apply exists, so that a test can make one node's apply fail. #}
{%- set root = salt["pillar.get"]("kiss:cluster:lookup:root") %}
kiss-test-vms-applied:
  file.managed:
    - name: {{ root }}/applied
    - makedirs: True
    - contents: {{ pillar.get("kiss_commit", "") | json }}

{%- for vm in salt["pillar.get"]("kiss:vms", {}) | sort %}
kiss-test-vms-{{ vm }}:
  file.managed:
    - name: {{ root }}/vms/{{ vm }}
    - makedirs: True
    - contents: {{ pillar["kiss"]["vms"][vm]["drbd_minor"] | string | json }}
{%- endfor %}

{%- if salt["file.file_exists"](root ~ "/fail-apply") %}
kiss-test-vms-fail:
  test.fail_without_changes:
    - name: told to fail by {{ root }}/fail-apply
{%- endif %}
