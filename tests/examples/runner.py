"""Run one example script in a subprocess, bounded in time, and read the JSON it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, out: Path, *args: str, timeout_s: float = 600.0) -> str:
    """Run ``examples/<name>/run.py --out OUT ARGS``; fail with its output unless it exits 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # The console scripts (fedtune, flower-superlink, ...) live next to the interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name / "run.py"), "--out", str(out), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
    )
    assert done.returncode == 0, (
        f"examples/{name} exited {done.returncode}\n--- stdout\n{done.stdout[-4000:]}"
        f"\n--- stderr\n{done.stderr[-6000:]}"
    )
    return done.stdout


def read_json(path: Path) -> Any:
    """The JSON document an example wrote."""
    return json.loads(path.read_text(encoding="utf-8"))
