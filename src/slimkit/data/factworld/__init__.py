"""The built-in knowledge world: a deterministic fictional world, its training corpus and task files.

>>> from slimkit.data.factworld import WorldConfig, build_world, generate_world
>>> world = generate_world(WorldConfig(n_people=50))
>>> build_world("world_dir", WorldConfig(seed=1))     # doctest: +SKIP
"""

from slimkit.data.factworld.build import (
    DOCUMENT_SEPARATOR,
    TASK_FILES,
    build_world,
    read_documents,
    write_world,
)
from slimkit.data.factworld.config import WorldConfig
from slimkit.data.factworld.generator import GENERATOR_VERSION, Fact, World, generate_world, mention_count
from slimkit.data.factworld.templates import PROMPT_FORMAT, QA_FORMAT, RELATIONS, RETRIEVAL_PROMPT_FORMAT

__all__ = [
    "DOCUMENT_SEPARATOR",
    "GENERATOR_VERSION",
    "PROMPT_FORMAT",
    "QA_FORMAT",
    "RELATIONS",
    "RETRIEVAL_PROMPT_FORMAT",
    "TASK_FILES",
    "Fact",
    "World",
    "WorldConfig",
    "build_world",
    "generate_world",
    "mention_count",
    "read_documents",
    "write_world",
]
