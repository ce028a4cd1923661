"""The long-poll's `since`: clients send back the JSON `updated_at` ("...Z")."""

from datetime import datetime, timezone

import pytest

from bacalhau_py.api.app import _since
from bacalhau_py.errors import UserInputError


def test_since_from_json_matches_the_nodes_isoformat():
    at = datetime(2026, 11, 22, 16, 47, 5, 209977, tzinfo=timezone.utc)
    as_json = '"2026-11-22T16:47:05.209977Z"'
    # What the API sends (pydantic's JSON) must compare equal to what the node compares.
    assert _since(as_json.strip('"')) == at.isoformat()
    assert _since(None) is None


def test_since_refuses_garbage():
    with pytest.raises(UserInputError, match="since"):
        _since("yesterday")
