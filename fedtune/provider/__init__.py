"""Provider tooling: seal a model directory into a signed artifact and check artifacts."""

from fedtune.provider.errors import ArtifactError, ModelDirError, ProviderError
from fedtune.provider.modeldir import ModelDir, scan_model_dir
from fedtune.provider.seal import (
    BLOB_NAME,
    MANIFEST_NAME,
    ArtifactReport,
    SealedArtifact,
    UnsealedModel,
    data_key_path,
    data_keys_dir,
    identity_path,
    load_or_create_identity,
    seal_model_dir,
    unseal_artifact,
    verify_artifact,
)

__all__ = [
    "BLOB_NAME",
    "MANIFEST_NAME",
    "ArtifactError",
    "ArtifactReport",
    "ModelDir",
    "ModelDirError",
    "ProviderError",
    "SealedArtifact",
    "UnsealedModel",
    "data_key_path",
    "data_keys_dir",
    "identity_path",
    "load_or_create_identity",
    "scan_model_dir",
    "seal_model_dir",
    "unseal_artifact",
    "verify_artifact",
]
