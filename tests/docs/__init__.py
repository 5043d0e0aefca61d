"""Tests of the user documentation under docs/."""
