"""Tests that run every example under examples/ as a user would, at its smallest settings."""
