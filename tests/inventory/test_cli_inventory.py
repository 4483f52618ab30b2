"""The `kiss-inventory` console script, as an operator or a script runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kiss-inventory"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


def test_json_output_lists_what_was_allocated(example_site):
    done = run("--site", str(example_site), "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["allocated"] == ["db", "mail", "web"]


def test_text_output_and_dry_run(example_site):
    done = run("--site", str(example_site), "--dry-run")

    assert done.returncode == 0, done.stderr
    assert "allocated: db, mail, web" in done.stdout
    assert "cache vm-config/example.yml: would change" in done.stdout
    assert not (example_site / "vm-config" / "example.yml").exists()


def test_bad_input_exits_non_zero_with_the_message(example_site):
    (example_site / "vm-config" / "example" / "mail.yml").write_text("name: mail\nsize: 1G\n")

    done = run("--site", str(example_site))

    assert done.returncode == 1
    assert "vm-config/example/mail.yml: size: unknown key" in done.stderr
    assert done.stdout == ""
