"""`bacalhau devstack`: N local nodes until interrupted."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import click

from bacalhau_py.cli.serve import job_limit_options
from bacalhau_py.cli.flags import Duration


@click.command()
@click.option("--nodes", type=click.IntRange(1, 64), default=3, show_default=True)
@click.option("--bad-compute-actors", type=click.IntRange(0), default=0, show_default=True,
              help="The last N nodes return wrong results (to see verification reject them).")
@click.option("--repo-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the nodes keep their repos (default: a new temporary folder).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the export lines to this file.")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Admission policy (YAML) for every node (see serve --policy).")
@job_limit_options
@click.option("--node-lost-after", type=Duration(), default="30s", show_default=True,
              help="Each node's `serve --node-lost-after`.")
def devstack(nodes, bad_compute_actors, repo_dir, env_file, policy_file,
             default_job_memory, default_job_cpu, limit_job_disk, min_free_disk, retention,
             node_lost_after):
    """Run NODES local nodes, each its own process with its own IPFS, until Ctrl-C."""
    import trio

    from bacalhau_py.devstack.stack import devstack as start, env_exports
    from bacalhau_py.errors import UserInputError

    if bad_compute_actors > nodes:
        raise UserInputError(f"--bad-compute-actors {bad_compute_actors} is more than --nodes {nodes}")
    policy = []
    if policy_file:
        from bacalhau_py.policy import load_policy

        load_policy(policy_file)  # a bad file stops here, once, not in every node
        policy = ["--policy", str(policy_file.resolve())]
    repo_dir = repo_dir or Path(tempfile.mkdtemp(prefix="bacalhau-devstack-"))
    # Every node gets the same limits.
    limits = [
        "--default-job-memory", str(default_job_memory), "--default-job-cpu", str(default_job_cpu),
        "--min-free-disk", str(min_free_disk), "--retention", str(retention),
        *(["--limit-job-disk", str(limit_job_disk)] if limit_job_disk is not None else []),
    ]

    async def main() -> None:
        # SIGTERM (kill, CI, systemd) and SIGHUP must stop the nodes too, not
        # just Ctrl-C: Python's default for them exits at once and left every
        # node and kubo child running. SIGINT is taken as well, because a shell
        # starts background jobs with it ignored.
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_stack)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    async def run_stack() -> None:
        every_node = [*limits, *policy, "--node-lost-after", f"{node_lost_after:g}"]
        async with start(repo_dir, nodes, bad_actors=bad_compute_actors, node_args=[every_node] * nodes) as stack:
            exports = env_exports(stack[0])
            if env_file:
                env_file.write_text(exports)
            for node in stack:
                bad = " (bad compute actor)" if node.index >= nodes - bad_compute_actors else ""
                click.echo(f"node {node.index}: {node.peer_id} api={node.api}{bad}", err=True)
            click.echo(f"devstack ready: {nodes} nodes in {repo_dir}; Ctrl-C stops them", err=True)
            click.echo(exports, nl=False)
            await trio.sleep_forever()

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C while stopping
    click.echo("devstack stopped", err=True)
