"""atheris harness for the ``audit_saved_checkpoint`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("audit_saved_checkpoint")
