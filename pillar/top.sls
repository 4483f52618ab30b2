# Pillar top file of a kisscluster site: every node gets the `kiss` pillar.
base:
  '*':
    - kiss
