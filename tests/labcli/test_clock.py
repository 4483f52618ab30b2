"""kiss-lab-clock, the lab's stand-in for NTP: it leaves a clock close to the host's alone, and
moves a far one by steps that kissclusterd never takes for a clock jump."""

import pytest

from kisscluster.heartbeat.config import Rules
from kisscluster.lab import clock, image

pytestmark = pytest.mark.fast


def test_a_clock_within_the_tick_latency_is_left_alone():
    assert clock.step_towards(0.05) == 0.0
    assert clock.step_towards(-clock.TOLERANCE) == 0.0


def test_a_far_clock_is_stepped_towards_the_host_by_less_than_an_interval():
    assert clock.step_towards(0.3) == pytest.approx(0.3)
    assert clock.step_towards(9.4) == clock.MAX_STEP
    assert clock.step_towards(-9.4) == -clock.MAX_STEP
    assert Rules().interval > clock.MAX_STEP


def test_every_lab_node_runs_it_from_the_image():
    files = image.guest_files("ssh-ed25519 AAAA lab")
    assert files[image.CLOCK_SCRIPT].startswith('"""kiss-lab-clock')
    unit = files["etc/systemd/system/kiss-lab-clock.service"]
    assert f"ExecStart=/usr/bin/python3 /{image.CLOCK_SCRIPT}\n" in unit
    assert "kiss-lab-clock.service" in next(c for c in image.SETUP_COMMANDS if "enable" in c)
