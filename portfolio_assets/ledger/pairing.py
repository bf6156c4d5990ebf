"""Intent/outcome pairing: the running state that checks each intent is closed by one outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------- intent/outcome pairing


@dataclass
class _Pairing:
    """Running state of the intent/outcome pairing over a ledger."""

    open: dict[tuple[str, str], tuple[int, int]]  # (run_id, asset) -> (line, seq) of the open intent
    waived: set[tuple[str, str]]  # open intents abandoned by a resume record (no outcome required)
    errors: list[str]
    pairs: int = 0
    failed: int = 0
    abandoned: int = 0

    @classmethod
    def empty(cls) -> _Pairing:
        """A pairing with nothing seen yet."""
        return cls(open={}, waived=set(), errors=[])

    def feed(self, line: int, record: Mapping[str, Any]) -> None:
        """Account for one (schema-valid) record at `line`."""
        kind = record["kind"]
        key = (record["run_id"], record["asset"])
        label = f"asset {record['asset']!r} (run {record['run_id']!r})"
        if kind == "intent":
            if key in self.open and key not in self.waived:
                self.errors.append(
                    f"line {line}: intent for {label} while the intent at line {self.open[key][0]} has no outcome"
                )
            self.open[key] = (line, record["seq"])
            self.waived.discard(key)
        elif kind == "outcome":
            if key not in self.open:
                self.errors.append(f"line {line}: outcome for {label} without a preceding intent")
                return
            del self.open[key]
            self.waived.discard(key)
            self.pairs += 1
            if record["payload"].get("status") == "failed":
                self.failed += 1
        elif kind == "resume":
            self._waive(line, record["payload"].get("abandoned_intents", []))

    def _waive(self, line: int, abandoned: object) -> None:
        if not isinstance(abandoned, list):
            self.errors.append(f"line {line}: abandoned_intents must be a list")
            return
        by_seq = {seq: key for key, (_, seq) in self.open.items()}
        for item in abandoned:
            seq = item.get("seq") if isinstance(item, dict) else None
            key = by_seq.get(seq) if isinstance(seq, int) else None
            if key is None or item != {"seq": seq, "run_id": key[0], "asset": key[1]}:
                self.errors.append(
                    f"line {line}: resume lists {item!r} as abandoned, but it is not an open intent"
                )
                continue
            self.waived.add(key)
            self.abandoned += 1

    def unresolved(self) -> list[tuple[int, int, str, str]]:
        """Open intents still owed an outcome: (line, seq, run_id, asset), in file order."""
        return sorted(
            (ln, seq, run, asset)
            for (run, asset), (ln, seq) in self.open.items()
            if (run, asset) not in self.waived
        )
