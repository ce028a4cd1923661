"""Fixtures for integration tests that need a REAL embedded kubo.

- ``embedded`` (function): a running `EmbeddedIPFS` in a fresh repo under tmp_path.
- ``embedded_ipfs`` (function): a `KuboRPC` client of that node.
- ``ipfs_pair`` (function): two embedded nodes, swarm-connected: ((sup_a, rpc_a), (sup_b, rpc_b)).
- ``provider_ctx``: a `ProviderContext` on ``embedded_ipfs`` with a 5 s fetch timeout.
"""

from __future__ import annotations

import pytest
import trio

from bacalhau_py.context import ProviderContext
from bacalhau_py.ipfs.client import KuboRPC
from bacalhau_py.ipfs.embedded import EmbeddedIPFS, open_embedded_ipfs

@pytest.fixture
async def embedded(tmp_path):
    async with open_embedded_ipfs(tmp_path / "ipfs-repo") as (supervisor, client):
        yield supervisor


@pytest.fixture
async def embedded_ipfs(embedded: EmbeddedIPFS):
    async with embedded.client() as client:
        yield client


@pytest.fixture
async def ipfs_pair(tmp_path):
    async with trio.open_nursery() as nursery:
        pair = []
        for name in ("a", "b"):
            supervisor = EmbeddedIPFS(tmp_path / f"ipfs-{name}")
            pair.append(supervisor)
        # Start both at once: the machine is slow, two cold starts in a row add up.
        async def start(supervisor):
            await nursery.start(supervisor.serve)
        async with trio.open_nursery() as starters:
            for supervisor in pair:
                starters.start_soon(start, supervisor)
        clients = [s.client() for s in pair]
        await clients[0].connect(pair[1].ready.addresses[0])
        try:
            yield (pair[0], clients[0]), (pair[1], clients[1])
        finally:
            for client in clients:
                await client.aclose()
            nursery.cancel_scope.cancel()


@pytest.fixture
def provider_ctx(embedded_ipfs: KuboRPC, tmp_path) -> ProviderContext:
    work = tmp_path / "work"
    work.mkdir()
    return ProviderContext(ipfs=embedded_ipfs, work_dir=work, fetch_timeout=5.0)
