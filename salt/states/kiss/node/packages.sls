# Packages, the kisscluster package itself, and the user VMs run as.
{%- from "kiss/map.jinja" import kiss with context %}

kiss-node-packages-pkg-installed:
  pkg.installed:
    - pkgs: {{ kiss.packages | json }}

# Kept as it is when Salt's Python has it (the lab and most sites install it before Salt can
# use these states); otherwise pip installs kisscluster_source into Salt's Python.
kiss-node-packages-kisscluster-pip-installed:
  pip.installed:
    - name: {{ kiss.kisscluster_source }}
    - unless:
      - fun: pip.is_installed
        pkgname: kisscluster
    - require:
      - pkg: kiss-node-packages-pkg-installed

kiss-node-packages-vm-user-present:
  user.present:
    - name: {{ kiss.vm_user }}
    - system: True
    - usergroup: True
    - groups: {{ kiss.vm_user_groups | json }}
    - home: /nonexistent
    - createhome: False
    - shell: /usr/sbin/nologin
    - require:
      - pkg: kiss-node-packages-pkg-installed
