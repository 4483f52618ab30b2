"""The node side of kiss-migrate: one session answers each operation with one JSON line, and a
bad word never reaches a file or a command."""

import io
import json
import socket
from pathlib import Path

import pytest

from kisscluster.migration import node

pytestmark = pytest.mark.fast


def serve(text: str) -> list[dict]:
    replies = io.StringIO()
    assert node.serve(io.StringIO(text), replies) == 0
    return [json.loads(line) for line in replies.getvalue().splitlines()]


def test_one_session_answers_each_operation_on_its_own_line(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(node, "RUN_DIR", tmp_path)
    answers = serve(
        "mark web node1 node2 node1 node2\n"
        "mark ../web node1 node2 node1 node2\n"
        "mark db node1 node2 node1 node2;reboot\n"
        "unmark web extra\n"
        "nosuch web\n"
    )
    assert [a["ok"] for a in answers] == [True, False, False, False, False]
    assert node.marked("web") == {"from": "node1", "to": "node2", "home": "node1", "here": "node2"}
    assert answers[1]["error"].startswith("mark ../web: ")
    assert "node2;reboot" in answers[2]["error"]
    assert "takes 0 word(s)" in answers[3]["error"]
    assert [p.name for p in tmp_path.iterdir()] == ["web.migration"]
    assert serve("unmark web\n") == [{"ok": True, "out": ""}]
    assert list(tmp_path.iterdir()) == []


def test_the_peers_free_memory_comes_from_meminfo():
    meminfo = (
        "MemTotal:        2030000 kB\nMemFree:          100000 kB\nMemAvailable:    1500000 kB\n"
    )
    assert node.mem_available_kib(meminfo) == 1_500_000
    with pytest.raises(ValueError, match="MemAvailable"):
        node.mem_available_kib("MemTotal: 1 kB\n")


def test_a_port_counts_as_listening_only_while_a_socket_listens_on_it():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        assert not node.listening(port)  # bound, not yet listening
        listener.listen(1)
        assert node.listening(port)
    assert not node.listening(port)
