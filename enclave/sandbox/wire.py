"""gRPC settings the sandbox runtime and its clients share: message sizes, the error-type key."""

from __future__ import annotations

# Trailing-metadata key carrying the class name of the domain error behind a failed call.
ERROR_TYPE_KEY = "fedtune-error"
# 256 MiB: LoadModel chunks are 1 MiB, but a masked vector or a plaintext global adapter of a
# large model's LoRA (or CKKS ciphertexts, 32 bytes per value) is one message.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
GRPC_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)
# LoadModel sends the sealed blob in chunks of this size.
CHUNK_SIZE = 1024 * 1024
