"""Pinned vendor roots shipped as package data: AMD ASK/ARK per product line, Intel SGX root."""
