"""Reliability: faults injected into real deployments, load, and the report of every case."""
