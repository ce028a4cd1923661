"""Verifiers decide which executions' results the requester accepts."""

from bacalhau_py.registry import ProviderRegistry

VERIFIERS = ProviderRegistry(
    "verifier",
    {
        "noop": "bacalhau_py.verifier.noop:NoopVerifier",
        "ipfs": "bacalhau_py.verifier.ipfs:IPFSVerifier",
        "deterministic": "bacalhau_py.verifier.deterministic:DeterministicVerifier",
    },
)
