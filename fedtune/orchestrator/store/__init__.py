"""Durable state of the orchestrator: the repository and blob-store interfaces and defaults."""

from fedtune.orchestrator.store.blobs import BlobStore, LocalBlobStore
from fedtune.orchestrator.store.repository import Repository
from fedtune.orchestrator.store.sqlite import SqliteRepository

__all__ = ["BlobStore", "LocalBlobStore", "Repository", "SqliteRepository"]
