"""The connected node and its network: ipfs add, node list/approve/reject, id, version."""

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
    """The nodes the connected node knows: peer ID, type, approval, labels, free capacity, admission policy."""
    with api_client() as client:
        nodes = client.nodes()
    if output == "json":
        click.echo(json.dumps(nodes, indent=2))
        return
    rows = [
        [
            info["peer_id"],
            ",".join(info["node_types"]),
            info.get("approval", "-"),
            ",".join(info.get("engines", [])),
            ",".join(f"{k}={v}" for k, v in sorted(info.get("labels", {}).items())),
            f"{info.get('free_cpu', 0):g}",
            _size(info.get("free_memory", 0)),
            str(info.get("free_gpu", 0)),
            str(info.get("running", 0)),
            "yes" if info.get("policy") else "no",
            *_job_limits(info),
        ]
        for info in nodes
    ]
    columns = ["PEER ID", "TYPE", "APPROVAL", "ENGINES", "LABELS", "FREE CPU", "FREE MEMORY", "FREE GPU", "RUNNING",
               "POLICY", "JOB DEFAULTS", "JOB DISK", "MIN FREE DISK"]
    print_table(columns, rows, flexible="LABELS")


@node.command("approve")
@click.argument("peer_id", metavar="PEER_ID")
@api_options
def node_approve(peer_id: str) -> None:
    """Let the connected requester send jobs to this compute node (operators only)."""
    with api_client() as client:
        answer = client.set_approval(peer_id, "approve")
    click.echo(f"node {answer['peer_id']} {answer['approval']}", err=True)


@node.command("reject")
@click.argument("peer_id", metavar="PEER_ID")
@api_options
def node_reject(peer_id: str) -> None:
    """Stop the connected requester sending jobs to this compute node (operators only)."""
    with api_client() as client:
        answer = client.set_approval(peer_id, "reject")
    click.echo(f"node {answer['peer_id']} {answer['approval']}", err=True)


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
@click.option("--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option("--client", "client_only", is_flag=True, help="Only this client's ID (no node needed).")
@api_options
def node_id(output: str, client_only: bool) -> None:
    """The connected node's peer ID and addresses, and this client's ID."""
    if client_only:
        from bacalhau_py.auth.client_key import ClientKey

        identity = {"client_id": ClientKey.load_or_create().client_id}
    else:
        with api_client() as client:
            info = client.node_info()
            client_id = client.key.client_id
        keys = ("peer_id", "node_types", "addresses", "ipfs_peer_id", "ipfs_addresses")
        identity = {**{key: info.get(key) for key in keys}, "client_id": client_id}
    if output == "json":
        click.echo(json.dumps(identity, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(identity, sort_keys=False), nl=False)


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
