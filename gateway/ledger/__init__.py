"""The usage ledger: every routed request, durably, once (SQLite here, or PostgreSQL shared by gateways)."""
