"""atheris harness for the ``sealed_stream`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("sealed_stream")
