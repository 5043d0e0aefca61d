"""Tests of the data owner's agent, ``fedtune owner join`` and results-need-both-sides exports."""
