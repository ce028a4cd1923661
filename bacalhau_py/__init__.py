"""bacalhau-py: a peer-to-peer compute-over-data network node."""

__version__ = "0.1.0"
