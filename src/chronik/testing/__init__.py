"""Test support for chronik users: contract suites that adapters pass.

Importing this package needs pytest (the ``dev`` extra).
"""
