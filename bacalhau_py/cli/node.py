"""The connected node and its network: ipfs add, node list, id, version."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bacalhau_py import __version__
from bacalhau_py.cli.flags import api_client, api_options
from bacalhau_py.cli.output import print_table


@click.group()
def ipfs() -> None:
    """IPFS on the connected node."""


@ipfs.command("add")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@api_options
def ipfs_add(path: Path) -> None:
    """Add a local file or folder to the connected node's IPFS; print its CID."""
    with api_client() as client:
        click.echo(client.ipfs_add(path))


@click.group()
def node() -> None:
    """Nodes of the network."""


@node.command("list")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@api_options
def node_list(output: str) -> None:
    """The nodes the connected node knows: peer ID, type, labels, free capacity."""
    with api_client() as client:
        nodes = client.nodes()
    if output == "json":
        click.echo(json.dumps(nodes, indent=2))
        return
    rows = [
        [
            info["peer_id"],
            ",".join(info["node_types"]),
            ",".join(info.get("engines", [])),
            ",".join(f"{k}={v}" for k, v in sorted(info.get("labels", {}).items())),
            f"{info.get('free_cpu', 0):g}",
            _size(info.get("free_memory", 0)),
            str(info.get("free_gpu", 0)),
            str(info.get("running", 0)),
            *_job_limits(info),
        ]
        for info in nodes
    ]
    columns = ["PEER ID", "TYPE", "ENGINES", "LABELS", "FREE CPU", "FREE MEMORY", "FREE GPU", "RUNNING",
               "JOB DEFAULTS", "JOB DISK", "MIN FREE DISK"]
    print_table(columns, rows, flexible="LABELS")


def _job_limits(info: dict) -> list[str]:
    """A compute node's defaults (cpu and memory of a job that asks for none) and disk limits."""
    if info.get("default_job_memory") is None:
        return ["-", "-", "-"]
    disk = info.get("limit_job_disk")
    return [
        f"cpu={info['default_job_cpu']:g} memory={_size(info['default_job_memory'])}",
        _size(disk) if disk is not None else "none",
        _size(info.get("min_free_disk") or 0),
    ]


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@click.command("id")
@api_options
def node_id() -> None:
    """The connected node's peer ID and addresses (JSON)."""
    with api_client() as client:
        info = client.node_info()
    keys = ("peer_id", "node_types", "addresses", "ipfs_peer_id", "ipfs_addresses")
    click.echo(json.dumps({key: info.get(key) for key in keys}, indent=2))


@click.command()
@click.option("--client", "client_only", is_flag=True, help="Only the client's version (no node needed).")
@api_options
def version(client_only: bool) -> None:
    """Client and server versions."""
    click.echo(f"Client Version: {__version__}")
    if client_only:
        return
    with api_client() as client:
        click.echo(f"Server Version: {client.version()['version']}")
