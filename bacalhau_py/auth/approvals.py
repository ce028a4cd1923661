"""Node approval (`serve --node-approval auto|manual`): which compute nodes a requester may use.

With `auto`, every node is approved unless an operator rejected it; with
`manual`, a node is pending until an operator approves it. A requester sends
no job (no AskBid, so no spec and no inline input either) to a node that is
not approved. Decisions are kept in the node's repo and survive restarts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from bacalhau_py.errors import UserInputError

Approval = Literal["approved", "pending", "rejected"]
Mode = Literal["auto", "manual"]
FILE_NAME = "node_approvals.json"


class Approvals:
    """Operators' decisions, `{peer_id: "approved" | "rejected"}`, in `<repo>/node_approvals.json`."""

    def __init__(self, path: Path | None, mode: Mode = "auto") -> None:
        self.path = path
        self.mode = mode
        self._decisions: dict[str, Approval] = {}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text())
                self._decisions = {
                    str(peer): decision for peer, decision in loaded.items() if decision in ("approved", "rejected")
                }
            except (ValueError, AttributeError):
                raise UserInputError(f"{path}: not a node approvals file (expected a JSON object)") from None

    def of(self, peer_id: str) -> Approval:
        return self._decisions.get(peer_id, "approved" if self.mode == "auto" else "pending")

    def decided(self, peer_id: str) -> bool:
        """True if an operator approved or rejected the node."""
        return peer_id in self._decisions

    def set(self, peer_id: str, decision: Literal["approved", "rejected"]) -> None:
        """Record an operator's decision (blocking: writes the file)."""
        self._decisions[peer_id] = decision
        if self.path is None:
            return
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(self._decisions, indent=2, sort_keys=True))
        os.replace(partial, self.path)
