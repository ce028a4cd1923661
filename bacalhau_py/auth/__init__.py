"""Trust: client keys and signed requests (`client_key`), API keys (`api_keys`), operators and
ownership (`access`), node approval (`approvals`), the job signature a compute node checks
(`job_signature`). Who may do what is written down in docs/trust.md.

Nothing is re-exported here: the CLI imports only `client_key`, and must not pay for the rest.
"""
