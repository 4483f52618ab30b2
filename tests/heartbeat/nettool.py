"""Run inside a test namespace: capture heartbeat payloads, or send datagrams from an address.

nettool.py sniff IFACE PORT COUNT TIMEOUT    print up to COUNT UDP payloads to PORT, hex
nettool.py send SRC DST PORT GAP HEX...      send each payload from SRC to DST:PORT, GAP s apart
"""

import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
IP_FREEBIND = 15


def sniff(ifname: str, source: str, port: int, count: int, timeout: float) -> None:
    wanted = socket.inet_aton(source)
    with socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP)) as sock:
        sock.bind((ifname, ETH_P_IP))
        deadline = time.monotonic() + timeout
        found = 0
        while found < count and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                packet = sock.recv(65535)
            except TimeoutError:
                break
            header = (packet[0] & 0x0F) * 4
            if packet[9] != socket.IPPROTO_UDP or packet[12:16] != wanted:
                continue
            dport = struct.unpack("!H", packet[header + 2 : header + 4])[0]
            if dport != port:
                continue
            print(packet[header + 8 :].hex(), flush=True)
            found += 1


def send(source: str, destination: str, port: int, gap: float, payloads: list[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((source, 0))
        for payload in payloads:
            sock.sendto(bytes.fromhex(payload), (destination, port))
            time.sleep(gap)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "sniff":
        sniff(args[0], args[1], int(args[2]), int(args[3]), float(args[4]))
    else:
        send(args[0], args[1], int(args[2]), float(args[3]), args[4:])
