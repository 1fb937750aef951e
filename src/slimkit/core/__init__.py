"""The shared core: configs, registry, targeting, errors, atomic io, seeding, progress."""

from slimkit.core.config import Config, check_choice, check_positive, check_range, load_yaml_text
from slimkit.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelLoadError,
    RegistryError,
    SlimkitError,
    TargetError,
    UnsupportedArchitectureError,
)
from slimkit.core.io import (
    atomic_dir,
    atomic_write,
    check_output_dir,
    check_output_file,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
    write_text,
)
from slimkit.core.progress import console, progress_bar, track
from slimkit.core.registry import Registry
from slimkit.core.seed import rng_state, seed_everything, set_rng_state
from slimkit.core.targeting import matches, select_modules

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "DataError",
    "ModelLoadError",
    "Registry",
    "RegistryError",
    "SlimkitError",
    "TargetError",
    "UnsupportedArchitectureError",
    "atomic_dir",
    "check_output_dir",
    "check_output_file",
    "atomic_write",
    "check_choice",
    "check_positive",
    "check_range",
    "console",
    "load_tensors",
    "load_yaml_text",
    "matches",
    "progress_bar",
    "read_json",
    "rng_state",
    "save_tensors",
    "seed_everything",
    "select_modules",
    "set_rng_state",
    "track",
    "write_json",
    "write_text",
]
