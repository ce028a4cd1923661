"""The directory's view of node liveness: silence and restarts, on trio's mock clock."""

from __future__ import annotations

from bacalhau_py.directory import NodeDirectory
from bacalhau_py.models.messages import NodeInfo


def info(peer_id: str, boot_id: str = "boot-1") -> NodeInfo:
    return NodeInfo(peer_id=peer_id, node_types=["compute"], boot_id=boot_id)


def directory() -> NodeDirectory:
    return NodeDirectory(lambda: NodeInfo(peer_id="own", node_types=["requester"]), lost_after=3)


async def test_a_silent_node_is_lost_once_and_back_when_heard_from_again(mock_clock):
    nodes = directory()
    nodes.update(info("a"))
    mock_clock.jump(2)
    assert nodes.liveness_changes() == ([], [])
    mock_clock.jump(2)
    assert nodes.liveness_changes() == ([("a", "silent for 3s")], [])
    assert nodes.liveness_changes() == ([], []), "a loss is reported once"
    assert [n.peer_id for n in nodes.all()] == ["own"]

    nodes.update(info("a"))
    assert nodes.liveness_changes() == ([], ["a"])
    assert [n.peer_id for n in nodes.all()] == ["own", "a"]


async def test_a_node_that_announces_a_new_boot_id_restarted_and_is_lost(mock_clock):
    nodes = directory()
    nodes.update(info("a"))
    nodes.update(info("a"))
    assert nodes.liveness_changes() == ([], [])
    nodes.update(info("a", boot_id="boot-2"))
    assert nodes.liveness_changes() == ([("a", "restarted")], [])
    assert [n.peer_id for n in nodes.all()] == ["own", "a"], "it is alive: it may take work again"


async def test_a_node_s_latest_info_is_found_while_it_is_alive(mock_clock):
    nodes = directory()
    assert nodes.alive("a") is None
    nodes.update(info("a", boot_id="boot-1"))
    nodes.update(info("a", boot_id="boot-2"))
    assert nodes.alive("a").boot_id == "boot-2"
    mock_clock.jump(4)
    assert nodes.alive("a") is None, "silent for longer than lost_after: as `all` no longer lists it"


async def test_quiet_nodes_are_those_silent_for_a_while_but_not_lost_yet(mock_clock):
    nodes = directory()
    nodes.update(info("a"))
    nodes.update(info("b"))
    mock_clock.jump(2)
    nodes.update(info("b"))
    assert nodes.quiet(1.5) == ["a"], "the node to ask directly before it counts as lost"
    mock_clock.jump(2)
    nodes.liveness_changes()
    assert nodes.quiet(1.5) == ["b"], "a lost node is not asked again and again"


async def test_any_message_from_a_live_node_keeps_it_alive_but_does_not_bring_a_lost_one_back(mock_clock):
    nodes = directory()
    nodes.update(info("busy"))
    nodes.update(info("gone"))
    for _ in range(3):
        # Its heartbeats do not get through, its reports (any request) do.
        mock_clock.jump(2)
        nodes.heard_from("busy")
    assert nodes.liveness_changes() == ([("gone", "silent for 3s")], [])
    assert nodes.alive("busy") is not None

    nodes.heard_from("gone")
    nodes.heard_from("stranger")
    assert nodes.liveness_changes() == ([], []), "a lost node comes back with its NodeInfo (where a restart shows)"
    assert [n.peer_id for n in nodes.all()] == ["own", "busy"]
