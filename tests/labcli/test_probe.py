"""The lab probe's reading of /proc/drbd (DRBD 8.4, as the lab's nodes print it): a StandAlone
resource has no protocol letter, and must still count as configured, with its role and I/O."""

import pytest

from kisscluster.lab import probe

pytestmark = pytest.mark.fast

PROC_DRBD = """version: 8.4.11 (api:1/proto:86-101)
 0: cs:StandAlone ro:Secondary/Unknown ds:UpToDate/Outdated   r-----
    ns:0 nr:8 dw:8 dr:65509 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 4: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
    ns:4 nr:88 dw:96 dr:32745 al:9 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 8: cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C s----
    ns:4 nr:216 dw:224 dr:65513 al:9 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:4
"""


def test_every_connection_state_is_read_with_roles_disks_and_io(tmp_path):
    for resource, minor in (("db", 0), ("mail", 4), ("web", 8)):
        (tmp_path / resource).mkdir()
        (tmp_path / resource / "0").symlink_to(f"/dev/drbd{minor}")
    volumes = probe.drbd(PROC_DRBD, tmp_path)
    assert volumes["db/0"] == {
        "minor": 0, "cs": "StandAlone", "role": "Secondary", "peer_role": "Unknown",
        "disk": "UpToDate", "peer_disk": "Outdated", "io": "r",
    }  # fmt: skip
    assert volumes["mail/0"]["cs"] == "Connected" and volumes["mail/0"]["role"] == "Primary"
    assert volumes["web/0"]["io"] == "s"
