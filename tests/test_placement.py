"""The placement file: VMs away from home and nodes in maintenance, and the primary-vms.target
drop-in lists they give each node."""

import json
from pathlib import Path

import pytest

from kisscluster import placement

pytestmark = pytest.mark.fast

HOMES = {"web": "node1", "mail": "node1", "db": "node2"}


def test_no_file_means_every_vm_at_home(tmp_path: Path):
    placed = placement.load(tmp_path / "placement.json")
    assert placed == placement.AT_HOME
    assert placement.split(HOMES, "node1", placed) == (["mail", "web"], ["db"])
    assert placement.split(HOMES, "node2", placed) == (["db"], ["mail", "web"])


def test_a_vm_moved_away_is_wanted_where_it_was_put_and_saved_atomically(tmp_path: Path):
    path = tmp_path / "state" / "placement.json"
    placement.save(placement.AT_HOME.moved("web", "node2", "node1"), path)
    placed = placement.load(path)
    assert placed.away == {"web": "node2"}
    assert json.loads(path.read_text()) == {"away": {"web": "node2"}, "maintenance": []}
    assert placement.split(HOMES, "node1", placed) == (["mail"], ["db", "web"])
    assert placement.split(HOMES, "node2", placed) == (["db", "web"], ["mail"])
    assert [p.name for p in path.parent.iterdir()] == ["placement.json"]


def test_a_vm_moved_back_home_leaves_no_entry():
    placed = placement.AT_HOME.moved("web", "node2", "node1").moved("web", "node1", "node1")
    assert placed.away == {}


def test_maintenance_is_set_once_and_lifted():
    placed = placement.AT_HOME.with_maintenance("node1", True).with_maintenance("node1", True)
    assert placed.maintenance == ("node1",)
    assert placed.with_maintenance("node1", False).maintenance == ()


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"away": {}}', '{"away": {"../x": "node1"}, "maintenance": []}',
     '{"away": {}, "maintenance": ["Node 1"]}'],
)  # fmt: skip
def test_a_bad_file_is_an_error_naming_it(tmp_path: Path, text: str):
    path = tmp_path / "placement.json"
    path.write_text(text)
    with pytest.raises(placement.PlacementError, match=r"placement\.json"):
        placement.load(path)


def test_drop_in_lists_read_what_the_template_wrote():
    text = "[Unit]\nWants=vm@web.service\nConflicts=vm@db.service\nConflicts=vm@mail.service\n"
    assert placement.drop_in_lists(text) == (["web"], ["db", "mail"])
