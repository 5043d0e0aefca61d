"""atheris harness for the ``payload`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("payload")
