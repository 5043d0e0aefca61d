"""Write the Flower App directory (``pyproject.toml`` + optional modules) that ``flwr run`` bundles.

``flwr run APP_DIR`` builds a FAB (a zip of the directory's ``*.py``/``*.toml``/... files)
from ``APP_DIR``; the SuperLink and every SuperNode unpack it under their ``FLWR_HOME/apps/``
and put that folder first on ``sys.path`` before importing the components it names. With
runtime dependency installation disabled, a component such as
``fedtune.federated.relay:app`` therefore resolves against the installed fedtune package,
and the directory needs nothing but its ``pyproject.toml``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from crypto.atomicfile import atomic_write_bytes

ConfigValue = str | int | float | bool
"""A run-config or node-config value: the scalar types Flower's ``UserConfig`` carries."""

_FLOWER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")  # flwr.supercore.utils.is_valid_name
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_OBJECT_REF = re.compile(rf"^{_DOTTED}:{_DOTTED}$")
_CONFIG_KEY = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class AppDir:
    """A Flower App directory: where it is, its FAB identity and its run-config defaults."""

    path: Path
    name: str
    publisher: str
    version: str
    serverapp: str
    clientapp: str
    config: Mapping[str, ConfigValue] = field(default_factory=dict)

    @property
    def fab_id(self) -> str:
        """``publisher/name``, as Flower reports it in ``flwr ls``."""
        return f"{self.publisher}/{self.name}"

    def check_run_config(self, overrides: Mapping[str, ConfigValue]) -> None:
        """Raise if ``overrides`` names a key this app does not declare or has a bad value.

        Flower would only notice inside the ServerApp and SuperNode processes (a failed run,
        or an error on every node), so the check happens before anything is submitted.
        """
        if not isinstance(overrides, Mapping):
            raise TypeError(f"run_config must be a mapping, got {type(overrides).__name__}")
        unknown = sorted(set(overrides) - set(self.config))
        if unknown:
            declared = ", ".join(sorted(self.config)) or "(none)"
            raise ValueError(
                f"run_config key(s) {unknown} are not declared in [tool.flwr.app.config] of "
                f"{self.path / 'pyproject.toml'}; declared keys: {declared}. Declare them "
                "with a default (write_app_dir(..., config={...})) before overriding them."
            )
        for key, value in overrides.items():
            toml_value(value, what=f"run_config[{key!r}]")


def write_app_dir(
    dest: Path,
    name: str,
    serverapp: str,
    clientapp: str,
    *,
    config: Mapping[str, ConfigValue] | None = None,
    modules: Mapping[str, Path] | None = None,
    publisher: str = "fedtune",
    version: str = "1.0.0",
    description: str = "fedtune federated session",
) -> AppDir:
    """Create a Flower App directory at ``dest`` whose components are ``module:attribute`` refs.

    ``config`` declares the run-config keys (flat, dotted keys allowed) with their defaults;
    ``flwr run --run-config`` may only override declared keys. ``modules`` maps a relative
    ``.py`` path inside the app to a source file copied there, for code that is not part of
    an installed package (the harness test app); fedtune's own apps leave it empty.
    ``dest`` must be missing or empty: every file in it ends up in the FAB.
    """
    if not isinstance(dest, Path):
        raise TypeError(f"dest must be a pathlib.Path, got {type(dest).__name__}")
    for label, value in (("name", name), ("publisher", publisher)):
        if not isinstance(value, str):
            raise TypeError(f"{label} must be a str, got {type(value).__name__}")
        if not _FLOWER_NAME.match(value):
            raise ValueError(
                f"{label} {value!r} is not a valid Flower name: start with a letter, then "
                "letters, digits or hyphens, at most 32 characters"
            )
    for label, ref in (("serverapp", serverapp), ("clientapp", clientapp)):
        if not isinstance(ref, str):
            raise TypeError(f"{label} must be a str, got {type(ref).__name__}")
        if not _OBJECT_REF.match(ref):
            raise ValueError(
                f"{label} {ref!r} is not an object reference of the form "
                "'package.module:attribute'"
            )
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ValueError(f"version must look like '1.0.0', got {version!r}")
    if not isinstance(description, str):
        raise TypeError(f"description must be a str, got {type(description).__name__}")
    config = dict(config or {})
    for key, value in config.items():
        _check_config_key(key, what="config")
        toml_value(value, what=f"config[{key!r}]")
    copies = _checked_modules(modules or {})
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(
            f"{dest} exists and is not an empty directory; every file in an app directory "
            "is bundled into the FAB, so give each app a fresh directory"
        )

    dest.mkdir(parents=True, exist_ok=True)
    for relative, source in copies.items():
        atomic_write_bytes(dest / relative, source.read_bytes())
    atomic_write_bytes(
        dest / "pyproject.toml",
        _pyproject_text(name, publisher, version, description, serverapp, clientapp, config)
        .encode("utf-8"),
    )
    return AppDir(dest, name, publisher, version, serverapp, clientapp, config)


def read_app_dir(path: Path) -> AppDir:
    """Read an existing Flower App directory's identity, components and run-config defaults."""
    if not isinstance(path, Path):
        raise TypeError(f"path must be a pathlib.Path, got {type(path).__name__}")
    pyproject = path / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is not a Flower App directory: no pyproject.toml") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{pyproject} is not valid TOML: {err}") from None
    try:
        app = data["tool"]["flwr"]["app"]
        components = app["components"]
        return AppDir(
            path,
            str(data["project"]["name"]),
            str(app["publisher"]),
            str(data["project"]["version"]),
            str(components["serverapp"]),
            str(components["clientapp"]),
            _flatten(app.get("config", {})),
        )
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"{pyproject} lacks {err} needed by Flower: [project] name/version, "
            "[tool.flwr.app] publisher and [tool.flwr.app.components] serverapp/clientapp"
        ) from None


def toml_value(value: ConfigValue, *, what: str = "value") -> str:
    """Render one config scalar as a TOML value (the form Flower's config parser reads)."""
    # bool first: it is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{what} = {value} does not fit TOML's 64-bit integers")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} = {value} is not finite; Flower configs carry finite floats")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    raise TypeError(f"{what} must be str, int, float or bool, got {type(value).__name__}")


def config_toml(values: Mapping[str, ConfigValue], *, what: str = "config") -> str:
    """Render a flat ``key -> scalar`` mapping as a TOML document (dotted keys nest)."""
    lines = []
    for key, value in values.items():
        _check_config_key(key, what=what)
        lines.append(f"{key} = {toml_value(value, what=f'{what}[{key!r}]')}")
    return "\n".join(lines) + "\n"


def _check_config_key(key: object, *, what: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"{what} keys must be str, got {type(key).__name__}")
    if not _CONFIG_KEY.match(key):
        raise ValueError(
            f"{what} key {key!r} must be letters, digits, '_' or '-' (dots separate sections)"
        )


def _toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _checked_modules(modules: Mapping[str, Path]) -> dict[str, Path]:
    if not isinstance(modules, Mapping):
        raise TypeError(f"modules must be a mapping, got {type(modules).__name__}")
    checked: dict[str, Path] = {}
    for relative, source in modules.items():
        if not isinstance(relative, str):
            raise TypeError(f"modules keys must be str, got {type(relative).__name__}")
        if not isinstance(source, Path):
            raise TypeError(f"modules[{relative!r}] must be a pathlib.Path")
        pure = PurePosixPath(relative)
        if pure.is_absolute() or ".." in pure.parts or pure.suffix != ".py":
            raise ValueError(f"modules key {relative!r} must be a relative path to a .py file")
        # Flower's FAB builder drops these names (flwr.common.constant.FAB_EXCLUDE_PATTERNS),
        # so the app would fail to import them on the nodes.
        if pure.name.startswith("test_") or pure.name.endswith("_test.py"):
            raise ValueError(
                f"modules key {relative!r}: Flower leaves test_*.py and *_test.py out of the "
                "FAB; rename the module"
            )
        if pure.parts[0] in {"build", "eggs", "lib", "lib64", "parts", ".venv", ".flwr"}:
            raise ValueError(f"modules key {relative!r}: Flower leaves {pure.parts[0]}/ out")
        if not source.is_file():
            raise ValueError(f"modules[{relative!r}] = {source} is not a file")
        checked[str(pure)] = source
    return checked


def _pyproject_text(name: str, publisher: str, version: str, description: str,
                    serverapp: str, clientapp: str, config: Mapping[str, ConfigValue]) -> str:
    # flwr.common.config.validate_fields_in_config wants [project] name/version and
    # [tool.flwr.app] publisher + components; description and license only silence warnings.
    # No [tool.flwr.federations]: the SuperLink connection lives in FLWR_HOME/config.toml.
    lines = [
        "# Written by fedtune.federated.appdir; flwr run bundles this directory into a FAB.",
        "[project]",
        f"name = {_toml_string(name)}",
        f"version = {_toml_string(version)}",
        f"description = {_toml_string(description)}",
        'license = "Apache-2.0"',
        'dependencies = ["flwr>=1.41,<1.43"]',
        "",
        "[tool.flwr.app]",
        f"publisher = {_toml_string(publisher)}",
        "",
        "[tool.flwr.app.components]",
        f"serverapp = {_toml_string(serverapp)}",
        f"clientapp = {_toml_string(clientapp)}",
        "",
        "[tool.flwr.app.config]",
    ]
    return "\n".join(lines) + "\n" + (config_toml(config) if config else "")


def _flatten(table: object, prefix: str = "") -> dict[str, ConfigValue]:
    if not isinstance(table, dict):
        raise TypeError("[tool.flwr.app.config] must be a table")
    flat: dict[str, ConfigValue] = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{full}."))
        else:
            flat[full] = value
    return flat
