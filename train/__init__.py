"""ra_sdk.train: the RA network, its baselines and the trainer (needs the ``train`` extra).

Installed as ``ra_sdk.train`` (the repository folder is ``train/``).
"""
