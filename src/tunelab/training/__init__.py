"""The training loop (on Accelerate) and its checkpoints."""
