"""fedtune: privacy-preserving model collaboration on federated rounds with attested sandboxes."""

__version__ = "0.1.0"
