"""Use cases over the ports: chat turns, feedback, quotas, learning, backups, evaluation.

Services depend on the domain and on `ion.ports` only; which adapter sits behind a port is
decided by `ion.bootstrap`.
"""
