"""`bacalhau serve`: run one long-lived node until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import re
import signal
import sys
from pathlib import Path

import click

from bacalhau_py.cli.flags import Duration

# How long a stopping node may spend stopping its executions and telling
# their requesters, before it stops regardless.
DRAIN_TIMEOUT = 10.0


class _LogfmtFormatter(logging.Formatter):
    """One structured line per event: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace('"', "'")
        line = f'time={self.formatTime(record, "%Y-%m-%dT%H:%M:%S")} level={record.levelname.lower()} ' \
               f'logger={record.name} msg="{message}"'
        if record.exc_info:
            line += ' error="' + self.formatException(record.exc_info).replace("\n", " | ").replace('"', "'") + '"'
        return line


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("bacalhau_py").setLevel(level)


def job_limit_options(command):
    """`serve` and `devstack` flags: a node's limits on each job (`compute.limits`)."""
    from bacalhau_py.cli.flags import CPU, Duration, Size

    options = [
        click.option("--default-job-memory", type=Size(), default="1Gb", show_default=True,
                     help="Memory a job that asks for none may use."),
        click.option("--default-job-cpu", type=CPU(), default="1", show_default=True,
                     help="Cores a job that asks for none may use."),
        click.option("--limit-job-disk", type=Size(), help="Most bytes one job may write to its outputs."),
        click.option("--min-free-disk", type=Size(), default="0", show_default=True,
                     help="Make no bids while the node's disk has less free space (e.g. 5Gb)."),
        click.option("--retention", type=Duration(), default="7d", show_default=True,
                     help="How long results stay (IPFS pins, local-publisher folders, fetched copies) "
                          "and a requester keeps finished jobs, e.g. 12h, 7d."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.option("--peer", "peers", multiple=True, metavar="MULTIADDR",
              help="A node to join (repeatable); 'none' for a network of one.")
@click.option("--swarm-port", type=click.IntRange(0, 65535), default=1235, show_default=True,
              help="libp2p TCP port (0: any free port).")
@click.option("--swarm-host", default="127.0.0.1", show_default=True,
              help="Address libp2p listens on (0.0.0.0 on a VM).")
@click.option("--ipfs-swarm-port", type=click.IntRange(0, 65535), default=4001, show_default=True,
              help="The embedded IPFS node's swarm port, on --swarm-host (0: any free port).")
@click.option("--api-host", default="127.0.0.1", show_default=True, envvar="BACALHAU_API_HOST")
@click.option("--api-port", type=click.IntRange(0, 65535), default=1234, show_default=True, envvar="BACALHAU_API_PORT")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path.home() / ".bacalhau",
              show_default=True, help="Keys, job store and IPFS repo.")
@click.option("--node-type", default="requester,compute", show_default=True,
              help="requester, compute, or both (comma separated).")
@click.option("--ipfs-connect", metavar="MULTIADDR",
              help="Use this kubo RPC API (e.g. /ip4/127.0.0.1/tcp/5001) instead of the embedded IPFS node.")
@click.option("--labels", "labels", multiple=True, callback=lambda ctx, param, value: _labels(value),
              help="k=v labels that job selectors match (repeatable).")
@click.option("--limit-total-cpu", help="Cores all jobs together may use (e.g. 2, 500m).")
@click.option("--limit-total-memory", help="Memory all jobs together may use (e.g. 4Gb).")
@click.option("--limit-total-gpu", type=click.IntRange(0), help="GPUs all jobs together may use.")
@click.option("--limit-job-cpu", help="Cores one job may use.")
@click.option("--limit-job-memory", help="Memory one job may use.")
@click.option("--job-selection-data-locality", type=click.Choice(["local", "anywhere"]), default="anywhere",
              show_default=True, help="Bid only on jobs whose IPFS inputs are on this node (local).")
@click.option("--bad-actor", is_flag=True, hidden=True, help="Return forged results (devstack tests).")
@click.option("--engines", hidden=True, help="Offer only these engines (comma separated).")
@click.option("--exit-on-stdin-eof", is_flag=True, hidden=True,
              help="Stop when standard input closes (the devstack's parent dies: no orphan nodes).")
@click.option("--api-keys", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="API keys, one per line: every request must send 'Authorization: Bearer KEY'.")
@click.option("--api-insecure", is_flag=True,
              help="Serve the API on a non-loopback --api-host without API keys (anyone who reaches it may submit).")
@click.option("--operator", "operators", multiple=True, metavar="CLIENT_ID",
              help="A client ID (see 'bacalhau id --client') that may list, cancel and read every job and "
                   "approve nodes (repeatable).")
@click.option("--node-approval", type=click.Choice(["auto", "manual"]), default="auto", show_default=True,
              help="manual: send no job to a compute node until an operator runs 'bacalhau node approve'.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Admission policy (YAML): which images, modules, clients and network jobs may use, per dataset.")
@click.option("--allow-listed-local-paths", "local_paths", multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="A host path jobs may mount read-only with -i file:///PATH:/TARGET (repeatable).")
@click.option("--node-lost-after", type=Duration(), default="30s", show_default=True,
              help="A node silent this long is lost and its running jobs are rescheduled; this node also "
                   "announces itself at least 3 times per period (use the same value on every node).")
@click.option("--allow-private-urls", is_flag=True,
              help="Let URL inputs reach loopback and private addresses (a node inside a trusted network).")
@click.option("--max-upload-size", default="1Gb", show_default=True,
              help="Largest upload 'bacalhau ipfs add' may send to this node (e.g. 512Mb, 2Gb).")
@job_limit_options
def serve(peers, swarm_port, swarm_host, ipfs_swarm_port, api_host, api_port, repo, node_type, ipfs_connect, labels,
          limit_total_cpu, limit_total_memory, limit_total_gpu, limit_job_cpu, limit_job_memory,
          job_selection_data_locality, bad_actor, engines, exit_on_stdin_eof, api_keys, api_insecure, operators,
          node_approval, policy_file, local_paths,
          default_job_memory, default_job_cpu, limit_job_disk, min_free_disk, retention,
          node_lost_after, allow_private_urls, max_upload_size):
    """Run a long-lived node: requester and/or compute, with its own IPFS node."""
    from bacalhau_py.transport import unused_features

    unused_features.skip()  # before the node's modules import libp2p
    import trio

    from bacalhau_py.auth.api_keys import APIKeys
    from bacalhau_py.compute.capacity import Capacity
    from bacalhau_py.compute.limits import JobLimits
    from bacalhau_py.errors import BacalhauError, UserInputError
    from bacalhau_py.node import Node, NodeConfig
    from bacalhau_py.policy import load_policy

    types = frozenset(t.strip() for t in node_type.split(",") if t.strip())
    if not types or not types <= {"requester", "compute"}:
        raise UserInputError(f"--node-type {node_type!r}: expected requester, compute or requester,compute")
    if not (api_keys or api_insecure or _loopback(api_host)):
        raise UserInputError(
            f"--api-host {api_host} is not a loopback address: anyone who reaches it could run jobs; "
            "give --api-keys FILE (or --api-insecure to serve it open anyway)"
        )
    for client_id in operators:
        if not _CLIENT_ID.fullmatch(client_id):
            raise UserInputError(
                f"--operator {client_id!r}: expected a client ID (64 hex characters, see 'bacalhau id --client')"
            )
    config = NodeConfig(
        repo=repo.expanduser(),
        node_types=types,
        api_host=api_host,
        api_port=api_port,
        swarm_host=swarm_host,
        swarm_port=swarm_port,
        ipfs_swarm_port=ipfs_swarm_port,
        peers=tuple(p for p in peers if p != "none"),
        ipfs_connect=ipfs_connect,
        labels=labels,
        limit_total=_capacity("--limit-total", limit_total_cpu, limit_total_memory, limit_total_gpu),
        limit_job=_capacity("--limit-job", limit_job_cpu, limit_job_memory, None),
        data_locality=job_selection_data_locality,
        bad_actor=bad_actor,
        engines=tuple(e for e in engines.split(",") if e) if engines else None,
        api_keys=APIKeys.load(api_keys) if api_keys else None,
        operators=frozenset(operators),
        node_approval=node_approval,
        policy=load_policy(policy_file) if policy_file else None,
        allowed_local_paths=tuple(path.resolve() for path in local_paths),
        job_limits=JobLimits(
            default_memory=default_job_memory, default_cpu=default_job_cpu, disk=limit_job_disk,
            min_free_disk=min_free_disk,
        ),
        retention=retention,
        node_lost_after=node_lost_after,
        allow_private_urls=allow_private_urls,
        max_upload_bytes=_size("--max-upload-size", max_upload_size),
    )
    configure_logging()

    async def drain_then_stop(node, scope: trio.CancelScope) -> None:
        # While the network is still up: stop running executions and tell
        # their requesters, so remote jobs fail now rather than at their timeout.
        with trio.move_on_after(DRAIN_TIMEOUT):
            await node.drain()
        scope.cancel()

    async def main() -> None:
        draining = False
        async with trio.open_nursery() as nursery:
            node = await nursery.start(Node(config).serve)
            host, port = node.api_address
            # Machine-readable readiness line (devstack and scripts wait for it).
            print(f"ready peer_id={node.peer_id} api=http://{host}:{port} "
                  f"swarm={','.join(node.transport.addresses)} ipfs_api={node.ipfs_api}", flush=True)
            if exit_on_stdin_eof:
                nursery.start_soon(_stop_on_stdin_eof, nursery.cancel_scope)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for received in signals:
                    logging.getLogger("bacalhau_py.node").info("stopping on %s", signal.Signals(received).name)
                    if draining:
                        break  # a second signal: stop now
                    draining = True
                    nursery.start_soon(drain_then_stop, node, nursery.cancel_scope)
                nursery.cancel_scope.cancel()

    try:
        config.repo.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BacalhauError(f"--repo {config.repo}: cannot create it: {error.strerror}") from None
    trio.run(main)


async def _stop_on_stdin_eof(scope) -> None:
    import os

    import trio

    async with trio.lowlevel.FdStream(os.dup(0)) as stdin:
        while await stdin.receive_some(4096):
            pass
    logging.getLogger("bacalhau_py.node").info("stopping: standard input closed")
    scope.cancel()


_CLIENT_ID = re.compile(r"[0-9a-f]{64}")


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def _labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for value in values:
        for item in value.split(","):
            key, sep, val = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r}: expected k=v", param_hint="--labels")
            labels[key.strip()] = val.strip()
    return labels


def _capacity(flag: str, cpu: str | None, memory: str | None, gpu: int | None):
    from bacalhau_py.compute.capacity import Capacity
    from bacalhau_py.errors import UserInputError
    from bacalhau_py.models import parse_cpu, parse_size

    if cpu is None and memory is None and gpu is None:
        return None
    machine = Capacity.of_machine()
    try:
        return Capacity(
            cpu=parse_cpu(cpu) if cpu is not None else machine.cpu,
            memory=parse_size(memory) if memory is not None else machine.memory,
            gpu=gpu if gpu is not None else machine.gpu,
        )
    except ValueError as error:
        raise UserInputError(f"{flag}-cpu/-memory: {error}") from None


def _size(flag: str, text: str) -> int:
    from bacalhau_py.errors import UserInputError
    from bacalhau_py.models import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise UserInputError(f"{flag}: {error}") from None
