"""What every provider is built with: `Provider(ctx: ProviderContext)`.

The node builds one context and passes it to each executor, storage provider
and publisher it loads from the registries, so adding a provider never
changes the node's wiring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bacalhau_py.ipfs.base import IPFSClient
from bacalhau_py.publisher.retention import ResultPins


@dataclass(frozen=True)
class ProviderContext:
    ipfs: IPFSClient
    work_dir: Path
    """The node's scratch folder; each execution gets a folder below it."""
    fetch_timeout: float = 120.0
    """Longest wait for one input (IPFS fetch, URL download)."""
    max_url_bytes: int = 1 << 30
    labels: dict[str, str] = field(default_factory=dict)
    allowed_local_paths: tuple[Path, ...] = ()
    """Host paths jobs may mount read-only (serve --allow-listed-local-paths)."""
    result_pins: ResultPins | None = None
    """Where a publisher notes the results it pinned (kept for the node's retention)."""
    allow_private_urls: bool = False
    """Let URL inputs reach loopback and private addresses (a node inside a trusted network)."""
