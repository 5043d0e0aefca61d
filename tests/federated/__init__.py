"""Tests of the Flower deployment harness (fedtune.federated) and the small app it runs."""
