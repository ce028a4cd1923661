"""Benchmarks: bacalhau-py against the raw tools, measured in the same run.

`python -m bench` runs them all (`make bench`); `python -m bench NAME...`
runs some. Each module has NAME and `async def run(ctx) -> list[Result]`.
"""
