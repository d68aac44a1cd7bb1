"""What to do about each service: the policy (allow / monitor / block per service, category and
host; `model`), the names of internal hosts (`hostnames`), and the firewall rules that enforce
the blocked part (`firewall`, one module per rule format)."""

from collector.policy.model import (ACTIONS, ALLOW, BLOCK, EXCEPTION_KEYS, MONITOR, OTHER, POLICY_KEYS,
                                    PREFIX_BLOCK, Policy, PolicyError, PolicyException, PolicyTable, parse_policy)

__all__ = ["ACTIONS", "ALLOW", "BLOCK", "EXCEPTION_KEYS", "MONITOR", "OTHER", "POLICY_KEYS", "PREFIX_BLOCK", "Policy",
           "PolicyError", "PolicyException", "PolicyTable", "parse_policy"]
