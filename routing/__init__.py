"""Routing: the fleet's typed records, wire schemas and the decision logic.

Pure logic only: nothing here runs an HTTP server, and nothing here imports
``gateway`` or ``edge_worker`` (both import from here).
"""
