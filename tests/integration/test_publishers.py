"""Publishers against the real embedded kubo."""

from __future__ import annotations

import pytest

from bacalhau_py.context import ProviderContext
from bacalhau_py.errors import PublishError
from bacalhau_py.publisher import PUBLISHERS
from bacalhau_py.results import content_hash, write_exit_code



def result_folder(root, *, empty_output: bool):
    root.mkdir()
    (root / "stdout").write_text("hello\n")
    (root / "stderr").write_text("")
    write_exit_code(root, 0)
    (root / "outputs").mkdir()
    if not empty_output:
        (root / "outputs" / "result.txt").write_text("42\n")
    return root


async def test_ipfs_publisher_makes_results_fetchable_by_another_node(ipfs_pair, tmp_path):
    (node_a, rpc_a), (node_b, rpc_b) = ipfs_pair
    folder = result_folder(tmp_path / "results", empty_output=True)
    publisher = PUBLISHERS.load("ipfs")(ProviderContext(ipfs=rpc_a, work_dir=tmp_path))
    cid = await publisher.publish("exec-1", folder)
    assert await rpc_a.is_pinned(cid)
    fetched = await rpc_b.get(cid, tmp_path / "fetched", timeout=10)
    assert content_hash(fetched) == content_hash(folder)


@pytest.mark.parametrize("empty_output", [True, False])
async def test_local_publisher_gives_the_ipfs_cid_without_adding(embedded_ipfs, tmp_path, empty_output):
    folder = result_folder(tmp_path / "results", empty_output=empty_output)
    ctx = ProviderContext(ipfs=embedded_ipfs, work_dir=tmp_path)
    local_cid = await PUBLISHERS.load("local")(ctx).publish("exec-1", folder)
    assert folder.is_dir()  # kept where it is
    assert not await embedded_ipfs.is_pinned(local_cid)  # nothing added
    assert await PUBLISHERS.load("ipfs")(ctx).publish("exec-1", folder) == local_cid


async def test_publishing_a_missing_folder_is_a_publish_error(embedded_ipfs, tmp_path):
    ctx = ProviderContext(ipfs=embedded_ipfs, work_dir=tmp_path)
    for name in ("ipfs", "local"):
        with pytest.raises(PublishError, match="no result folder"):
            await PUBLISHERS.load(name)(ctx).publish("exec-1", tmp_path / "nope")
