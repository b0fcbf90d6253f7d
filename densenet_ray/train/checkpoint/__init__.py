"""The checkpoint format: starting weights, the training state a checkpoint saves and restores, a trained model
out of a run, and compiled graphs carried in the run directory."""
