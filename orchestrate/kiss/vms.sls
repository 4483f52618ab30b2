{#- salt-run state.orchestrate kiss.vms, run by kiss-configure on the primary (no salt-master
    daemon; config: salt/master.example). Pillar from kiss-configure:
      kiss_commit      the pushed commit both working copies must be at (default: local HEAD)
      kiss_test        apply with test=True on both nodes
      kiss_config_dir  this node's minion config dir (default: master option kiss_minion_config_dir)
      kiss_skip_peer   only this node (kiss-configure --force with the peer unreachable)
      kiss_candidate   with kiss_test: a site directory on this node with the edits and cache a
                       real run would commit; both nodes apply it instead of their working copy
    Each step requires the previous one: the run stops at the first failure. #}
{%- set step_args = {
      "commit": pillar.get("kiss_commit") or None,
      "test": pillar.get("kiss_test", False),
      "config_dir": pillar.get("kiss_config_dir") or opts.get("kiss_minion_config_dir", "/etc/salt"),
      "sls": "kiss.vms",
      "candidate": pillar.get("kiss_candidate") or None,
    } %}
{%- set with_peer = not pillar.get("kiss_skip_peer", False) %}

{%- if with_peer %}
kiss-orchestrate-vms-check-peer:
  module.run:
    - kiss.rollout_step:
      - step: check-peer
      {%- for key, value in step_args | dictsort %}
      - {{ key }}: {{ value | json }}
      {%- endfor %}
{%- endif %}

kiss-orchestrate-vms-apply-local:
  module.run:
    - kiss.rollout_step:
      - step: apply-local
      {%- for key, value in step_args | dictsort %}
      - {{ key }}: {{ value | json }}
      {%- endfor %}
{%- if with_peer %}
    - require:
      - module: kiss-orchestrate-vms-check-peer

kiss-orchestrate-vms-apply-peer:
  module.run:
    - kiss.rollout_step:
      - step: apply-peer
      {%- for key, value in step_args | dictsort %}
      - {{ key }}: {{ value | json }}
      {%- endfor %}
    - require:
      - module: kiss-orchestrate-vms-apply-local
{%- endif %}
