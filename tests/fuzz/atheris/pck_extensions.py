"""atheris harness for the ``pck_extensions`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("pck_extensions")
