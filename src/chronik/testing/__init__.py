"""Test support for chronik users: contract suites that adapters pass.

Importing its suites needs pytest: the ``testing`` extra (``pip install 'chronik[testing]'``).
"""
