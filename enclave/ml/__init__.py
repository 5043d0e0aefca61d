"""The sandbox's ML core: records, model building, LoRA adapters, local training and evaluation."""

from enclave.ml.data import (
    Example,
    OwnerData,
    RecordFormat,
    RecordLimits,
    load_owner_data,
    load_records,
    parse_records,
    split_train_eval,
)
from enclave.ml.errors import (
    AdapterMismatch,
    MLError,
    ModelLoadError,
    RecordError,
    TrainingDiverged,
    UnsupportedModel,
)
from enclave.ml.modeldir import ModelFiles, read_model_dir, write_model_dir
from enclave.ml.task import TaskKind

__all__ = [
    "AdapterMismatch",
    "Example",
    "MLError",
    "ModelFiles",
    "ModelLoadError",
    "OwnerData",
    "RecordError",
    "RecordFormat",
    "RecordLimits",
    "TaskKind",
    "TrainingDiverged",
    "UnsupportedModel",
    "load_owner_data",
    "load_records",
    "parse_records",
    "read_model_dir",
    "split_train_eval",
    "write_model_dir",
]
