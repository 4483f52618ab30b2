"""One readable summary of a node's `state.apply` result (salt-call --out json)."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StateSummary:
    """Counts and the lines worth reading: states that changed (or would) and states that failed."""

    total: int = 0
    changed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors

    def lines(self, test: bool) -> list[str]:
        verb = "would change" if test else "changed"
        lines = [f"{self.total} states, {len(self.changed)} {verb}, {len(self.failed)} failed"]
        lines += [f"  error: {error}" for error in self.errors]
        lines += [f"  failed: {item}" for item in self.failed]
        lines += [f"  {verb}: {item}" for item in self.changed]
        return lines


def _describe(key: str, result: dict[str, Any]) -> str:
    parts = key.split("_|-")
    state_id = result.get("__id__") or (parts[1] if len(parts) > 1 else key)
    function = f"{parts[0]}.{parts[-1]}" if len(parts) == 4 else "?"
    comment = " ".join(str(result.get("comment") or "").split())
    return f"{state_id} ({function}): {comment}" if comment else f"{state_id} ({function})"


def summarize(local: Any) -> StateSummary:
    """Summarize the `local` value of `salt-call --out json state.apply`: a dict of state
    results, or a list of render/compile errors."""
    summary = StateSummary()
    if isinstance(local, list):
        summary.errors = [" ".join(str(error).split()) for error in local] or ["no states ran"]
        return summary
    if not isinstance(local, dict):
        summary.errors = [f"unexpected state.apply output: {local!r}"]
        return summary
    ordered = sorted(local.items(), key=lambda item: item[1].get("__run_num__", 0))
    for key, result in ordered:
        summary.total += 1
        if result.get("result") is False:
            summary.failed.append(_describe(key, result))
        elif result.get("changes") or result.get("result") is None:
            summary.changed.append(_describe(key, result))
    return summary
