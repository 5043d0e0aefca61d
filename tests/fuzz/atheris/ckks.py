"""atheris harness for the ``ckks`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("ckks")
