"""Identity: users, password hashing, login throttling and security events.

The modules are imported directly (``tessera.identity.passwords`` ...); this package keeps no
state and re-exports nothing, so importing one piece never drags in the others.
"""
