"""Publishers make an execution's result folder available to the requester and client."""

from bacalhau_py.registry import ProviderRegistry

PUBLISHERS = ProviderRegistry(
    "publisher",
    {
        "ipfs": "bacalhau_py.publisher.ipfs:IPFSPublisher",
        "local": "bacalhau_py.publisher.local:LocalPublisher",
    },
)
