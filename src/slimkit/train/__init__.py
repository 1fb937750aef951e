"""Training causal LMs: the loop, its config, optimizers (a registry), schedules, data, checkpoints.

    from slimkit.train import TrainConfig, train, tokenize_documents
    ids = tokenize_documents(tokenizer, documents)
    result = train(model, ids, TrainConfig(steps=200, batch_size=8, seqlen=128), out_dir="run")
    result = train(model, ids, cfg, out_dir="run", resume=True)      # continue exactly

``slimkit train CONFIG.yaml`` runs :func:`train_from_yaml`. See docs/training.md.
"""

from slimkit.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from slimkit.train.config import AdamWConfig, OptimizerConfig, TrainConfig
from slimkit.train.data import DataPosition, PackedSampler, tokenize_documents
from slimkit.train.loop import Callback, TrainResult, accumulate_gradients_, causal_lm_loss, train
from slimkit.train.optim import OPTIMIZERS, build_optimizer, weight_decay_groups
from slimkit.train.recipe import train_from_yaml
from slimkit.train.schedules import cosine_schedule, cosine_with_warmup

__all__ = [
    "OPTIMIZERS",
    "AdamWConfig",
    "Callback",
    "DataPosition",
    "OptimizerConfig",
    "PackedSampler",
    "TrainConfig",
    "TrainResult",
    "accumulate_gradients_",
    "build_optimizer",
    "causal_lm_loss",
    "cosine_schedule",
    "cosine_with_warmup",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "tokenize_documents",
    "train",
    "train_from_yaml",
    "weight_decay_groups",
]

# The memory-efficient optimizers register themselves in OPTIMIZERS (`optimizer: galore | q-galore`);
# imported last because slimkit.optim builds on this package.
import slimkit.optim  # noqa: E402, F401
