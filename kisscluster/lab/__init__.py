"""kiss-lab: two Debian guests under qemu (TCG) that run kisscluster for real.

`image` builds the cached guest image, `machine` boots and reaches one node, `cluster` brings
the pair up with the checkout's kisscluster and the example site, `cli` is the command line.
"""
