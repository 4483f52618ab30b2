"""Helpers shared by every test tier: the example site, masterless Salt configs, salt-call."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from kisscluster import paths

CHECKOUT = Path(__file__).resolve().parent.parent


def copy_example_site(target: Path) -> Path:
    """The example site (pillar/ and vm-config/ of the checkout) as a fresh directory."""
    target.mkdir(parents=True, exist_ok=True)
    for part in ("pillar", "vm-config"):
        shutil.copytree(CHECKOUT / part, target / part)
    return target


def write_minion_config(
    config_dir: Path, site: Path, minion_id: str = "node1", **extra: object
) -> Path:
    """A masterless minion config dir for `salt-call -c`; everything Salt writes stays inside."""
    salt = paths.salt_root()
    config_dir.mkdir(parents=True, exist_ok=True)
    root = config_dir / "root"
    config = {
        "file_client": "local",
        "id": minion_id,
        "root_dir": str(root),
        "pki_dir": str(root / "pki"),
        "cachedir": str(root / "cache"),
        "sock_dir": str(root / "sock"),
        "log_file": str(root / "minion.log"),
        "file_roots": {"base": [str(salt / "states")]},
        "pillar_roots": {"base": [str(site / "pillar")]},
        "module_dirs": [str(salt / "_modules")],
        "states_dirs": [str(salt / "_states")],
        "kiss_site": str(site),
        **extra,
    }
    (config_dir / "minion").write_text(yaml.safe_dump(config), encoding="utf-8")
    return config_dir


def run_salt_call(config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run real `salt-call --local` with this config dir, JSON output, exit code passed through."""
    salt_call_bin = Path(sys.executable).with_name("salt-call")
    command = [
        str(salt_call_bin) if salt_call_bin.exists() else "salt-call",
        "--local",
        "-c",
        str(config_dir),
        "--out",
        "json",
        "--log-level",
        "quiet",
        "--retcode-passthrough",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def salt_call(config_dir: Path, *args: str, check: bool = True) -> dict:
    """`run_salt_call` and return its JSON `local` value; with `check`, a non-zero exit fails."""
    completed = run_salt_call(config_dir, *args)
    if check and completed.returncode != 0:
        output = f"{completed.stdout}\n{completed.stderr}"
        raise AssertionError(f"{completed.args} exited {completed.returncode}\n{output}")
    try:
        return json.loads(completed.stdout)["local"]
    except (json.JSONDecodeError, KeyError) as exc:
        output = f"{completed.stdout}\n{completed.stderr}"
        raise AssertionError(f"no JSON from salt-call:\n{output}") from exc
