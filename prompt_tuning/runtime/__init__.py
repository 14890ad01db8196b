"""The training, evaluation and inference runtime: partitioning, optimizer, steps, checkpoints, loops."""
