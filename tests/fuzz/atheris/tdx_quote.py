"""atheris harness for the ``tdx_quote`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("tdx_quote")
