"""Input sources: where a job's input volumes come from."""

from bacalhau_py.registry import ProviderRegistry

STORAGES = ProviderRegistry(
    "input source",
    {
        "ipfs": "bacalhau_py.storage.ipfs:IPFSStorage",
        "url": "bacalhau_py.storage.url:URLStorage",
        "inline": "bacalhau_py.storage.inline:InlineStorage",
        "local": "bacalhau_py.storage.local:LocalStorage",
    },
)
