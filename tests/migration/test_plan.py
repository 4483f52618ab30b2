"""kiss-migrate's decisions without I/O: the pre-check refusals, and the step plan with its
undo for a failure (or Ctrl-C) at each step, driven by a fake clock."""

import copy

import pytest

from kisscluster.migration import plan

pytestmark = pytest.mark.fast

VOLUME = {"volume": 0, "minor": 4, "cs": "Connected", "role": "Primary", "peer_role": "Secondary",
          "disk": "UpToDate", "peer_disk": "UpToDate"}  # fmt: skip
HERE = {"runs": True, "migrating": False, "conf_digest": "c1", "unit_digest": "u1",
        "volumes": [VOLUME], "target": "primary-vms", "maintenance": [],
        "mem_available_kib": 4_000_000}  # fmt: skip
PEER = {**HERE, "runs": False, "volumes": [{**VOLUME, "role": "Secondary", "peer_role": "Primary"}]}


def refused(here=None, peer=None, ram=64):
    return plan.refusals("web", ram, "node1", "node2", here or HERE, peer or PEER)


def test_a_healthy_pair_may_migrate():
    assert refused() == []


@pytest.mark.parametrize(
    ("side", "change", "says"),
    [
        ("here", {"runs": False}, "web does not run on node1"),
        ("peer", {"runs": True}, "web already runs on node2"),
        ("peer", {"migrating": True}, "a migration of web is under way"),
        ("peer", {"conf_digest": None}, "node2 has no /etc/vm/web.conf"),
        ("peer", {"conf_digest": "c2"}, "differ between node1 and node2"),
        ("peer", {"unit_digest": "u2"}, "differ between node1 and node2"),
        ("here", {"volumes": []}, "web has no DRBD volume up on node1"),
        ("here", {"volumes": [{**VOLUME, "cs": "WFConnection", "peer_disk": "DUnknown"}]},
         "web/0 is WFConnection UpToDate/DUnknown on node1"),
        ("here", {"volumes": [VOLUME, {**VOLUME, "volume": 1, "cs": "SyncSource",
                                       "peer_disk": "Inconsistent"}]},
         "web/1 is SyncSource UpToDate/Inconsistent"),
        ("peer", {"target": "no-vms"}, "node2 runs no-vms: it takes no VM now"),
        ("peer", {"target": "manual-vms"}, "node2 runs manual-vms"),
        ("peer", {"target": None}, "node2 runs no VM target"),
        ("here", {"maintenance": ["node2"]}, "node2 is in maintenance"),
        ("peer", {"maintenance": ["node2"]}, "node2 is in maintenance"),
        ("peer", {"mem_available_kib": 100 * 1024}, "node2 has 100 MiB available, web needs 128"),
    ],
)  # fmt: skip
def test_each_unsafe_fact_refuses_before_anything_changes(side, change, says):
    facts = {"here": copy.deepcopy(HERE), "peer": copy.deepcopy(PEER)}
    facts[side].update(change)
    found = refused(facts["here"], facts["peer"])
    assert len(found) == 1
    assert says in found[0]


def test_maintenance_of_the_source_does_not_refuse_emptying_it():
    assert refused(here={**HERE, "maintenance": ["node1"]}) == []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Run:
    """Steps that log what they do and undo; the named step raises `error` (time passes 1 s
    per step)."""

    WINDOW = ("mark", "place", "two-primaries", "incoming", "migrate")
    FINISH = ("forget-incoming", "place here", "stop source", "one primary", "unmark")

    def __init__(self, fail: str | None = None, error: BaseException | None = None,
                 undo_fails: str | None = None) -> None:  # fmt: skip
        self.log: list[str] = []
        self.lines: list[str] = []
        self.clock = Clock()
        self.fail, self.error, self.undo_fails = fail, error or RuntimeError("boom"), undo_fails

    def _act(self, name: str, failing: str | None, error: BaseException):
        def act() -> None:
            self.clock.now += 1
            self.log.append(name)
            if name == failing:
                raise error

        return act

    def steps(self, names, undo: bool) -> list[plan.Step]:
        return [
            plan.Step(name, self._act(name, self.fail, self.error),
                      self._act(f"undo {name}", self.undo_fails and f"undo {self.undo_fails}",
                                RuntimeError("undo broke")) if undo else None)
            for name in names
        ]  # fmt: skip

    def __call__(self) -> None:
        plan.carry_out(self.steps(self.WINDOW, True), self.steps(self.FINISH, False),
                       self.lines.append, self.clock)  # fmt: skip


def test_every_step_runs_in_order_with_its_elapsed_time():
    run = Run()
    run()
    assert run.log == [*Run.WINDOW, *Run.FINISH]
    assert run.lines[0] == "[   1.0 s] mark"
    assert run.lines[-1] == "[  10.0 s] unmark"


@pytest.mark.parametrize("failing", Run.WINDOW)
@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_before_the_switch_over_undoes_every_step_taken_in_reverse(failing, error):
    run = Run(fail=failing, error=error)
    with pytest.raises(plan.Failed) as failed:
        run()
    taken = list(Run.WINDOW[: Run.WINDOW.index(failing) + 1])
    # The failing step is undone too: it may have done part of its work (undo is idempotent).
    assert run.log == [*taken, *(f"undo {name}" for name in reversed(taken))]
    assert failed.value.undone
    assert failed.value.cause is error
    assert failed.value.left == []
    assert not set(Run.FINISH) & set(run.log)


def test_an_undo_that_fails_does_not_stop_the_others_and_is_reported():
    run = Run(fail="migrate", undo_fails="incoming")
    with pytest.raises(plan.Failed) as failed:
        run()
    assert run.log[-5:] == ["undo migrate", "undo incoming", "undo two-primaries", "undo place",
                            "undo mark"]  # fmt: skip
    assert not failed.value.undone
    assert any("could not undo incoming: undo broke" in line for line in run.lines)


@pytest.mark.parametrize("failing", Run.FINISH)
@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_after_the_switch_over_is_never_undone_and_names_what_is_left(failing, error):
    run = Run(fail=failing, error=error)
    with pytest.raises(plan.Failed) as failed:
        run()
    assert not any(entry.startswith("undo") for entry in run.log)
    assert failed.value.left == list(Run.FINISH[Run.FINISH.index(failing) :])
    assert not failed.value.undone
