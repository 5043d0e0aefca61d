"""The federated data plane: Flower's Deployment Engine (SuperLink, SuperNodes) and its apps."""
