"""Security tests: the authorisation matrix, and replay and downgrade refusals."""
