"""Sharp tools: raw primitives that are easy to misuse. Prefer the recipes in ``crypto``."""
