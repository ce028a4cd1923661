"""The admission policy: what a compute node runs at all, and on which dataset.

The policy is data (`Policy`, read from YAML by `load_policy`) plus one pure
function, `check`, that the compute node calls before it bids and again right
before it runs. A refusal is a value (`Refusal`) whose reason names the rule.
"""

from bacalhau_py.policy._check import Refusal, check
from bacalhau_py.policy._model import Policy, Rules, load_policy

__all__ = ["Policy", "Refusal", "Rules", "check", "load_policy"]
