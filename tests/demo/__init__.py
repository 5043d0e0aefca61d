"""Tests of ``fedtune demo``: the whole flow end to end."""
