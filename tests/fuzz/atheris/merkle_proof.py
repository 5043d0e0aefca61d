"""atheris harness for the ``merkle_proof`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("merkle_proof")
