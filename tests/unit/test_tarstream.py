import trio

from bacalhau_py import tarstream


async def test_folders_round_trip_under_their_prefixes(tmp_path):
    top, other = tmp_path / "top", tmp_path / "other"
    (top / "outputs").mkdir(parents=True)
    (top / "stdout").write_bytes(b"x" * (3 << 20))
    (other / "sub").mkdir(parents=True)
    (other / "sub" / "f").write_text("deep")
    dest = await tarstream.extract(tarstream.stream_folders([(top, ""), (other, "raw/node")]), tmp_path / "dest")
    assert (dest / "stdout").read_bytes() == b"x" * (3 << 20)
    assert (dest / "outputs").is_dir()
    assert (dest / "raw" / "node" / "sub" / "f").read_text() == "deep"


async def test_a_consumer_that_stops_early_ends_the_producer(tmp_path):
    (tmp_path / "big").write_bytes(b"y" * (20 << 20))
    stream = tarstream.stream_folders([(tmp_path, "")])
    first = await stream.__anext__()
    assert first
    with trio.fail_after(5):
        await stream.aclose()


async def test_a_generator_resumed_from_another_task_works(tmp_path):
    (tmp_path / "f").write_bytes(b"z" * (5 << 20))
    stream = tarstream.stream_folders([(tmp_path, "")])
    chunks = [await stream.__anext__()]

    async def more():
        async for chunk in stream:
            chunks.append(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(more)
    assert sum(map(len, chunks)) > 5 << 20
