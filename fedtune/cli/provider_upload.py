"""``fedtune provider upload`` and ``fedtune provider policy set``: the orchestrator side of a
provider (registered on ``fedtune.cli.provider.app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedtune.cli.provider import app, byte_progress, parse_size

policy_app = typer.Typer(help="Release policies held by the key broker.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
broker_app = typer.Typer(
    help="Run the key broker at your own site instead of the orchestrator's.", no_args_is_help=True
)
app.add_typer(broker_app, name="broker")

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="fedtune home (default: $FEDTUNE_HOME).")
]


def _home(home: Path | None) -> Path:
    from fedtune.settings import load_settings

    return home if home is not None else load_settings().home


@app.command("upload")
def upload_command(
    directory: Annotated[Path, typer.Argument(help="A sealed artifact, or a model directory.")],
    name: Annotated[
        str | None, typer.Option(help="Model name (needed to seal a model dir).")
    ] = None,
    version: Annotated[str, typer.Option(help="Model version (when sealing).")] = "1",
    out: Annotated[Path | None, typer.Option(help="Where to seal (default: DIR.sealed).")] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="Signed release policy JSON: register the data key with it."),
    ] = None,
    chunk_size: Annotated[str, typer.Option(help="Upload chunk size, e.g. 4MiB.")] = "4MiB",
    home: HomeOption = None,
) -> None:
    """Seal if needed, upload with resume (re-run after an interruption), register the key."""
    from crypto.datakey import DataKey
    from enclave.attest import SignedReleasePolicy
    from fedtune.orchestrator.client import ClientConfig, OrchestratorClient
    from fedtune.provider.seal import (
        MANIFEST_NAME,
        data_key_path,
        data_keys_dir,
        open_manifest,
        seal_model_dir,
    )

    root = _home(home)
    config = ClientConfig.load(root)
    console = Console(highlight=False)
    if not (directory / MANIFEST_NAME).is_file():
        if name is None:
            raise typer.BadParameter("sealing a model directory needs --name")
        target = out or directory.with_name(directory.name + ".sealed")
        if (target / MANIFEST_NAME).is_file():
            console.print(f"using the artifact already sealed in {target}")
        else:
            from fedtune.provider.modeldir import scan_model_dir

            model = scan_model_dir(directory)
            with byte_progress("sealing", model.total_size, console=console) as advance:
                seal_model_dir(
                    model,
                    target,
                    name=name,
                    version=version,
                    identity=config.load_identity(),
                    keys_dir=data_keys_dir(root),
                    progress=advance,
                )
        directory = target
    signed, blob = open_manifest(directory)
    m = signed.manifest
    with (
        OrchestratorClient(config) as client,
        byte_progress("uploading", m.sealed_size, console=console) as advance,
    ):
        last = 0

        def progress(done: int, total: int) -> None:
            nonlocal last
            advance(done - last)
            last = done

        version_pb = client.upload(
            signed, blob, chunk_size=parse_size(chunk_size), progress=progress
        )
        console.print(
            f"[bold green]registered[/] {m.model_name}@{m.model_version} "
            f"({version_pb.size} bytes, {version_pb.digest_algorithm} "
            f"{version_pb.ciphertext_digest.hex()[:16]}...)"
        )
        if policy is not None:
            key = DataKey.load(data_key_path(root, m.data_key_id))
            v = client.register_key(
                m.model_name, m.model_version, key, SignedReleasePolicy.load(policy)
            )
            console.print(f"data key registered with the broker under policy version {v}")


@policy_app.command("set")
def policy_set_command(
    model: Annotated[str, typer.Argument(help="The model name the policy guards.")],
    policy: Annotated[Path, typer.Option(help="Signed release policy JSON (a higher version).")],
    home: HomeOption = None,
) -> None:
    """Replace a model's release policy; an older or equal version is refused (downgrade)."""
    from enclave.attest import SignedReleasePolicy
    from fedtune.orchestrator.client import ClientConfig, OrchestratorClient

    signed = SignedReleasePolicy.load(policy)
    if signed.policy.allow_simulated:
        Console(stderr=True).print(
            "[yellow]warning:[/] this policy accepts SIMULATED evidence (development only)"
        )
    with OrchestratorClient(ClientConfig.load(_home(home))) as client:
        status = client.set_policy(model, signed)
    Console(highlight=False).print(f"release policy of {model} is now version {status.version}")


@broker_app.command("init")
def broker_init_command(
    directory: Annotated[Path, typer.Option("--dir", help="Where the broker keeps its state.")],
    host: Annotated[str, typer.Option(help="Host name or IP data owners reach it at.")],
    port: Annotated[int, typer.Option(help="Its mutual-TLS port.")] = 7445,
    home: HomeOption = None,
) -> None:
    """Create a standalone broker's keys; prints the reference session terms carry."""
    from fedtune.orchestrator.standalone import init_broker

    info = init_broker(directory, provider_home=_home(home), host=host, port=port)
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[bold green]key broker created[/] in {directory}")
    out.print(f"address      {info.ref.address}")
    out.print(f"TLS pin      {info.ref.tls_sha256}")
    out.print(f"HPKE key     {info.ref.public_key_sha256}")
    out.print(f"Create sessions with 'fedtune session create --key-broker-dir {directory} ...'.")


@broker_app.command("serve")
def broker_serve_command(
    directory: Annotated[Path, typer.Option("--dir", help="The broker's directory.")],
    port: Annotated[int | None, typer.Option(help="Override the port (0: any free).")] = None,
) -> None:
    """Serve the key broker (and its audit log) until SIGINT/SIGTERM."""
    import signal
    import threading

    from fedtune.orchestrator.standalone import StandaloneBroker

    broker = StandaloneBroker(directory, port=port)
    bound = broker.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"listening broker={broker.info.host}:{bound}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        broker.stop()
