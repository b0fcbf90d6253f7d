"""The training options: each declared once (``options.py``), how declarations work (``declaration.py``), their
choices and per-dataset defaults, parsing of values, and the resolved configuration."""
