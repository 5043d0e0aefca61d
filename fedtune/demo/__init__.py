"""``fedtune demo`` as a library: the scenario, the throw-away deployment, and the run."""

from fedtune.demo.errors import DemoError
from fedtune.demo.run import DemoResult, run_demo, verify_audit
from fedtune.demo.scenario import MODEL_NAME, MODEL_VERSION, DemoScenario
from fedtune.demo.world import DemoPaths, DemoWorld, minilm_dir, sandbox_threads

__all__ = [
    "MODEL_NAME",
    "MODEL_VERSION",
    "DemoError",
    "DemoPaths",
    "DemoResult",
    "DemoScenario",
    "DemoWorld",
    "minilm_dir",
    "run_demo",
    "sandbox_threads",
    "verify_audit",
]
