"""IMAGE as a docker job names it: a name, an ID, a verified reference or a content-addressed archive."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bacalhau_py.models import Task
from bacalhau_py.models.image import parse_image

HEX = "ab" * 32
CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


@pytest.mark.parametrize(
    ("text", "kind", "fields"),
    [
        ("busybox", "name", {"name": "busybox"}),
        ("registry.local:5000/team/app:1.2", "name", {"name": "registry.local:5000/team/app:1.2"}),
        (f"sha256:{HEX}", "id", {"digest": f"sha256:{HEX}"}),
        (f"busybox@sha256:{HEX}", "digest", {"name": "busybox", "digest": f"sha256:{HEX}"}),
        (f"ipfs://{CID}", "ipfs", {"cid": CID}),
        (f"https://example.com/images/app.tar.gz#sha256={HEX}", "url",
         {"url": "https://example.com/images/app.tar.gz", "digest": f"sha256:{HEX}"}),
    ],
)
def test_image_forms(text, kind, fields):
    ref = parse_image(text)
    assert ref.kind == kind and ref.text == text
    assert {key: getattr(ref, key) for key in fields} == fields


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://example.com/app.tar", "an image URL needs the archive's hash (expected http(s)://HOST/PATH#sha256=HEX)"),
        ("https://example.com/app.tar#sha256=abc", "is not a SHA-256 (expected 64 lowercase hex digits)"),
        ("ipfs://not-a-cid", "is not a CID"),
        ("busybox@md5:abc", "expected NAME@sha256:HEX"),
        ("bad image", "is not an image"),
    ],
)
def test_bad_images_say_what_is_expected(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_image(text)
    with pytest.raises(ValidationError):
        Task(engine="docker", image=text)

