"""kissclusterd: the heartbeat and failover daemon (core: pure rules; daemon: the I/O around it).

See core.py for the decision rules, protocol.py for the heartbeat datagram, config.py for the
configuration file format.
"""
