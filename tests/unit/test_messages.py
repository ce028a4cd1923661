"""Wire payloads refuse what a hostile peer could send (models/messages.py)."""

import pytest
from pydantic import ValidationError

from bacalhau_py.models.messages import ExecutionUpdate

CID = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"


def test_a_failed_runs_logs_cid_must_be_a_cid():
    assert ExecutionUpdate(job_id="j", execution_id="e", state="Failed", logs_cid=CID).logs_cid == CID
    with pytest.raises(ValidationError, match="is not a CID"):
        ExecutionUpdate(job_id="j", execution_id="e", state="Failed", logs_cid="../../etc/passwd")
