"""Work on a trained checkpoint: evaluate it on a dataset, predict on new inputs, export it."""
