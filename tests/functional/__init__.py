"""Functional tests: handlers and adapters on moto (a package, so basenames may repeat tests/unit)."""
