# Packages and the user VMs run as. kisscluster itself is already there: these states run
# from the virtual environment it is installed in (README, "Install").
{%- from "kiss/map.jinja" import kiss with context %}

kiss-node-packages-pkg-installed:
  pkg.installed:
    - pkgs: {{ kiss.packages | json }}

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
