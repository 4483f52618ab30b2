"""A command run from a kiss execution module through Salt's `cmd.run_all`, checked."""

from collections.abc import Callable, Sequence
from typing import Any

from salt.exceptions import CommandExecutionError


def run(run_all: Callable[..., dict[str, Any]], argv: Sequence[str]) -> str:
    """Run `argv` (no shell) with `run_all`, the module's `__salt__["cmd.run_all"]`; its
    stdout, or CommandExecutionError naming the command and its stderr."""
    result = run_all(list(argv), python_shell=False, ignore_retcode=True)
    if result["retcode"] != 0:
        output = (result["stderr"] or result["stdout"]).strip()
        raise CommandExecutionError(f"{' '.join(argv)} exited {result['retcode']}: {output}")
    stdout: str = result["stdout"]
    return stdout
