"""Test images built on the local engine (no registry): each differs from `busybox:latest` by a label.

`built_images()` yields a `make(tag) -> image ID` and removes every image it
made (and their tags) on the way out.
"""

from __future__ import annotations

import gzip
import io
import uuid
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors

BASE = "busybox:latest"


@contextmanager
def built_images():
    client = docker.from_env()
    made: list[str] = []

    def make(tag: str) -> str:
        dockerfile = f"FROM {BASE}\nLABEL bacalhau-py.test={uuid.uuid4().hex}\n".encode()
        image, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
        made.append(image.id)
        return image.id

    try:
        yield make
    finally:
        for image_id in made:
            try:
                client.images.remove(image_id, force=True)
            except docker.errors.ImageNotFound:
                pass
        client.close()


def save(image: str, path: Path, *, gzipped: bool = False) -> Path:
    """`docker save IMAGE` (by name: the archive carries the name) into `path`."""
    client = docker.from_env()
    try:
        data = b"".join(client.images.get(image).save(named=True))
    finally:
        client.close()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


def remove(image: str) -> None:
    """Remove a tag, or an image by ID, from the engine."""
    client = docker.from_env()
    try:
        client.images.remove(image, force=True)
    finally:
        client.close()


def tags_of(image_id: str) -> list[str]:
    client = docker.from_env()
    try:
        return client.images.get(image_id).tags
    finally:
        client.close()


def exists(image: str) -> bool:
    client = docker.from_env()
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()
