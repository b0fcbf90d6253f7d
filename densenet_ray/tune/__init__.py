"""Ray Tune sweeps over training runs: the paper's studies (wide, deep, growth) and custom spaces."""
