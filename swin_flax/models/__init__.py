"""The Swin Transformer (flax.linen port of the official model) and PyTorch weight conversion:
plan.py (arguments, stage plan; no jax), ops.py, swin.py (modules), layout.py (scanned params),
summary.py (shapes, counts, table), convert.py (PyTorch state_dicts). Import the module you need:
importing this package imports none of them, so `plan` stays free of jax."""
