"""What kiss-configure and kiss-nuke-vm make of salt-run's answer: the steps in run order, the
ones after a failure known as not run, and what the operator reads for each node."""

import pytest

from kisscluster.configure import rollout

pytestmark = pytest.mark.fast


def state(step_id: str, run_num: int, result: bool, comment: str) -> dict:
    """One state result as `salt-run --out json state.orchestrate` gives it."""
    return {
        "__id__": step_id,
        "__run_num__": run_num,
        "__sls__": "kiss.vms",
        "result": result,
        "comment": comment,
        "changes": {},
    }


def salt_run_data(*states: dict) -> dict:
    results = {f"module_|-{s['__id__']}_|-{s['__id__']}_|-run": s for s in states}
    return {"node1_master": results}


def test_steps_after_a_failure_did_not_run():
    data = salt_run_data(
        state("kiss-orchestrate-vms-apply-peer", 2, False, "One or more requisite failed: x"),
        state("kiss-orchestrate-vms-check-peer", 0, True, "kiss.rollout_step: node2: can go"),
        state("kiss-orchestrate-vms-apply-local", 1, False, "'kiss.rollout_step' failed: node1: x"),
    )

    reports = rollout.step_reports(data)

    assert [(r.step_id, r.ok, r.ran) for r in reports] == [
        ("kiss-orchestrate-vms-check-peer", True, True),
        ("kiss-orchestrate-vms-apply-local", False, True),
        ("kiss-orchestrate-vms-apply-peer", False, False),
    ]
    assert [r.comment for r in reports[:2]] == ["node2: can go", "node1: x"]


def test_the_operator_reads_each_node_and_where_it_failed():
    data = salt_run_data(
        state("kiss-orchestrate-nuke-check-local", 0, True, "kiss.nuke_step: node1: would x"),
        state(
            "kiss-orchestrate-nuke-check-peer", 1, False, "'kiss.nuke_step' failed: check-peer: y"
        ),
        state("kiss-orchestrate-nuke-nuke-local", 2, False, "One or more requisite failed: z"),
    )
    said: list[str] = []

    succeeded = rollout.tell(rollout.step_reports(data), "node1", "node2", said.append, "skipped")

    assert succeeded == ["kiss-orchestrate-nuke-check-local"]
    assert said == [
        "node1: would x",
        "node2: check-peer: y",
        "FAILED on node2 (kiss-orchestrate-nuke-check-peer)",
        "node1: skipped: an earlier step failed",
    ]


def test_render_errors_are_one_failed_step():
    reports = rollout.step_reports({"node1_master": ["Rendering SLS 'base:kiss.vms' failed"]})

    assert [(r.step_id, r.ok, r.ran) for r in reports] == [("salt-run", False, True)]
