# kiss.node: a freshly installed Debian node made ready to hold VM skeletons.
include:
  - kiss.node.packages
  - kiss.node.files
  - kiss.node.services
