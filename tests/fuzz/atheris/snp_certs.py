"""atheris harness for the ``snp_certs`` target in tests/fuzz/targets.py."""

from _harness import main

if __name__ == "__main__":
    main("snp_certs")
