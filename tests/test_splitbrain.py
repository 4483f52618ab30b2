"""kiss-split-brain's judgement: /proc/drbd and generation identifiers of DRBD 8.4 as the lab's
nodes print them, the verdict, the refusals and the operator's view. The commands themselves
run in the lab (tests/lab/test_3b_faults.py), against real DRBD."""

import pytest

from kisscluster.splitbrain import (
    Side,
    Volume,
    is_split_brain,
    parse_proc_drbd,
    refusal,
    render,
)

pytestmark = pytest.mark.fast

PROC_DRBD = """version: 8.4.11 (api:1/proto:86-101)
srcversion: B536C32A3EADA868561EFD9
 0: cs:StandAlone ro:Primary/Unknown ds:UpToDate/DUnknown   r-----
    ns:4 nr:0 dw:4 dr:65509 al:9 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:1024
 1: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----
    ns:0 nr:0 dw:0 dr:32736 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 3: cs:Unconfigured
 8: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----
    ns:0 nr:216 dw:8 dr:0 al:9 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:4096
	[=====>..............] sync'ed: 30.1% (4096/5860)K
"""

BASE = "7C9CA391D9C6AEFF"


def volume(current: str, bitmap: str = "0000000000000000", **fields: object) -> Volume:
    values: dict[str, object] = {
        "minor": 8,
        "connection": "StandAlone",
        "roles": "Primary/Unknown",
        "disks": "UpToDate/DUnknown",
        "out_of_sync_kib": 12,
        "generation": f"{current}:{bitmap}:{BASE}:7C9BA391D9C6AEFF:1:1:1:0:0:0:0",
    }
    return Volume(**(values | fields))  # type: ignore[arg-type]


def side(node: str, *volumes: Volume, running: bool = True) -> Side:
    return Side(node, "web", running, volumes)


def test_proc_drbd_gives_each_minor_its_states_and_out_of_sync_count():
    parsed = parse_proc_drbd(PROC_DRBD)
    assert parsed[0]["cs"] == "StandAlone" and parsed[0]["ro"] == "Primary/Unknown"
    assert parsed[0]["oos"] == "1024"
    assert parsed[1]["ds"] == "UpToDate/UpToDate" and parsed[1]["oos"] == "0"
    assert parsed[3] == {"cs": "Unconfigured"}
    assert parsed[8]["cs"] == "SyncTarget" and parsed[8]["oos"] == "4096"


def test_both_sides_with_a_generation_of_their_own_and_standalone_are_a_split_brain():
    one = side("node1", volume("20BB9D7800628329", BASE))
    other = side("node2", volume("F6BB27D17D3BB7C0", BASE))
    assert is_split_brain(one, other)


def test_only_one_side_changed_apart_is_no_split_brain():
    # node2 was Secondary while apart: its generation did not move; DRBD resyncs by itself.
    one = side("node1", volume("20BB9D7800628329", BASE))
    other = side("node2", volume(BASE, connection="WFConnection"))
    assert not is_split_brain(one, other)


def test_the_primary_flag_bit_alone_does_not_make_copies_differ():
    one = side("node1", volume("20BB9D7800628329", BASE, connection="Connected"))
    other = side("node2", volume("20BB9D7800628328", BASE, connection="Connected"))
    assert not is_split_brain(one, other)


def test_resolving_is_refused_when_connected_or_when_the_kept_copy_is_not_uptodate():
    connected = volume(BASE, connection="Connected", disks="UpToDate/UpToDate")
    assert "no split brain" in refusal(side("node1", connected), side("node2", connected))
    outdated = volume("20BB9D7800628329", BASE, disks="Outdated/DUnknown")
    good = volume("F6BB27D17D3BB7C0", BASE)
    why = refusal(side("node1", outdated), side("node2", good))
    assert why is not None and "node1's copy of web is not UpToDate" in why
    assert refusal(side("node2", good), side("node1", outdated)) is None


def test_the_view_shows_both_sides_and_the_command_for_each_choice():
    one = side("node1", volume("20BB9D7800628329", BASE, out_of_sync_kib=1024))
    other = side("node2", volume("F6BB27D17D3BB7C0", BASE), running=False)
    text = render(one, other)
    assert text.startswith("web: SPLIT BRAIN")
    assert "1024 KiB apart" in text and "12 KiB apart" in text
    assert "running" in text and "stopped" in text
    assert "kiss-split-brain web --discard node2" in text
    assert "kiss-split-brain web --discard node1" in text


def test_a_side_travels_as_json():
    one = side("node1", volume("20BB9D7800628329", BASE))
    assert Side.from_json(one.to_json()) == one
