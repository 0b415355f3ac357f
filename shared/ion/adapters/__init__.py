"""Adapters: the only modules that touch I/O (SQLite, Firestore, Pub/Sub, LLM providers...).

Each implements ports from `ion.ports`; the domain and the services never import this
package. Only `ion.bootstrap` chooses and builds them.
"""
