"""ra_sdk.train: the RA network, its baselines and the trainer (needs the ``train`` extra).

Installed as ``ra_sdk.train`` (the repository folder is ``train/``). Importing it
imports torch; ``import ra_sdk`` never does.
"""

from ra_sdk.network import RANet, ReconNet, build

from .callbacks import Callback, CSVLogger
from .checkpoint import CheckpointError, load_model
from .config import OBJECTIVES, TrainConfig
from .data import make_pool
from .trainer import Trainer

__all__ = ["OBJECTIVES", "CSVLogger", "Callback", "CheckpointError", "RANet", "ReconNet", "TrainConfig", "Trainer", "build", "load_model", "make_pool"]
