"""`bacalhau`: the command-line client (contract: shared/CLI.md) and the node commands.

Commands are imported only when run, and `--help` lists them from the table
below without importing any, so the CLI starts in well under 150 ms. Every
expected error ends as one line "Error: ..." and its exit code (2 for bad
input, 1 otherwise); only a bug shows a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from bacalhau_py.errors import BacalhauError

# name -> ("module:attribute", one-line help). `serve` and `devstack` belong to
# the node side; a missing module there only disables that command.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("bacalhau_py.cli.serve:serve", "Run one long-lived node."),
    "devstack": ("bacalhau_py.devstack.cli:devstack", "Run N local nodes until interrupted."),
    "run": ("bacalhau_py.cli.run:docker_run", "Submit a docker job (same as 'docker run')."),
    "docker": ("bacalhau_py.cli.run:docker", "Docker jobs: 'docker run IMAGE [CMD...]'."),
    "wasm": ("bacalhau_py.cli.run:wasm", "WebAssembly (WASI) jobs: 'wasm run MODULE [ARG...]'."),
    "create": ("bacalhau_py.cli.run:create", "Submit a job spec file (YAML, JSON or IPVM; '-' for stdin)."),
    "validate": ("bacalhau_py.cli.run:validate", "Check a job spec file."),
    "list": ("bacalhau_py.cli.jobs:list_jobs", "Recent jobs, newest first."),
    "describe": ("bacalhau_py.cli.jobs:describe", "Everything about one job."),
    "logs": ("bacalhau_py.cli.jobs:logs", "Stdout and stderr of a job."),
    "get": ("bacalhau_py.cli.jobs:get", "Download a job's results and check them against their CIDs."),
    "cancel": ("bacalhau_py.cli.jobs:cancel", "Cancel a job."),
    "ipfs": ("bacalhau_py.cli.node:ipfs", "IPFS on the connected node: 'ipfs add PATH'."),
    "node": ("bacalhau_py.cli.node:node", "Nodes: 'node list', 'node approve|reject PEER_ID'."),
    "id": ("bacalhau_py.cli.node:node_id", "The connected node's peer ID and addresses, and your client ID."),
    "version": ("bacalhau_py.cli.node:version", "Client and server versions."),
    "job": ("bacalhau_py.cli.job:job", "Bacalhau v1 jobs: 'job run FILE', describe, list, logs, executions, history, get, stop, validate."),
    "workflow": ("bacalhau_py.cli.workflow:workflow", "Workflows of IPVM tasks: 'workflow run FILE'."),
    "receipt": ("bacalhau_py.cli.workflow:receipt", "The signed receipt of an instruction CID."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target = COMMANDS[name][0]
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is None or not module_name.startswith(error.name):
                raise
            raise BacalhauError(f"'bacalhau {name}' is not available in this installation ({error})") from None
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bacalhau-py", prog_name="bacalhau", message="%(prog)s %(version)s")
def cli() -> None:
    """Run docker and wasm jobs next to IPFS data on a peer-to-peer network of nodes.

    Client commands reach a node's API at --api-host/--api-port
    (env BACALHAU_API_HOST, BACALHAU_API_PORT; default 127.0.0.1:1234).
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turn expected errors into one line and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="bacalhau", standalone_mode=False)
    except click.UsageError as error:
        _fail(_usage_line(error), error.exit_code)
    except click.ClickException as error:
        _fail(error.format_message(), error.exit_code)
    except BacalhauError as error:
        _fail(str(error), error.exit_code)
    except BaseExceptionGroup as group:
        # trio's nurseries wrap what their tasks raise: an expected error is
        # still one line, whichever task (API, IPFS, libp2p) raised it.
        error = _expected(group)
        if error is None:
            raise
        _fail(str(error), error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except BrokenPipeError:
        # `bacalhau logs JOB | head`: the reader left; that is not an error.
        sys.stderr.close()
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)


def _expected(group: BaseExceptionGroup) -> BacalhauError | None:
    """The first `BacalhauError` of a group that holds nothing else (but cancellations)."""
    import trio

    errors, rest = group.split(BacalhauError)
    if errors is None or (rest is not None and rest.split(trio.Cancelled)[1] is not None):
        return None
    while isinstance(errors, BaseExceptionGroup):
        errors = errors.exceptions[0]
    return errors


def _usage_line(error: click.UsageError) -> str:
    message = error.format_message()
    # A bad value's message already gives the expected form; for a missing or
    # unknown argument, the command's usage line is the expected form.
    if error.ctx is not None and (isinstance(error, click.MissingParameter) or not isinstance(error, click.BadParameter)):
        pieces = " ".join(error.ctx.command.collect_usage_pieces(error.ctx))
        message += f" Usage: {error.ctx.command_path} {pieces}"
    return message


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
