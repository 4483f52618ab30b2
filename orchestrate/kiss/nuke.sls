{#- salt-run state.orchestrate kiss.nuke pillar='{"vm": "<name>"}', run by kiss-nuke-vm on the
    primary (no salt-master daemon; config: salt/master.example). Other pillar keys:
      kiss_test        list every step on both nodes, remove nothing
      kiss_force       nuke even while the VM's unit is active (it is stopped first)
      kiss_config_dir  this node's minion config dir (default: master option kiss_minion_config_dir)
    Without kiss_test, both nodes first check (refusals stop the run before anything is removed),
    then each node nukes, then the VM is forgotten from the cache (committed, pushed to both). #}
{%- set test = pillar.get("kiss_test", False) %}
{%- set step_args = {
      "vm": pillar["vm"],
      "test": test,
      "force": pillar.get("kiss_force", False),
      "config_dir": pillar.get("kiss_config_dir") or opts.get("kiss_minion_config_dir", "/etc/salt"),
    } %}
{%- set steps = (["nuke-local", "nuke-peer", "forget"] if test else
                 ["check-local", "check-peer", "nuke-local", "nuke-peer", "forget"]) %}

{%- for step in steps %}
kiss-orchestrate-nuke-{{ step }}:
  module.run:
    - kiss.nuke_step:
      - step: {{ step }}
      {%- for key, value in step_args | dictsort %}
      - {{ key }}: {{ value | json }}
      {%- endfor %}
  {%- if not loop.first %}
    - require:
      - module: kiss-orchestrate-nuke-{{ loop.previtem }}
  {%- endif %}
{%- endfor %}
