"""Fuzz tests: every parser that sees outside bytes answers with a result or a typed error."""
