"""atheris harness for the ``secagg_messages`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("secagg_messages")
