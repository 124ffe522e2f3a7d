"""Experiment configs: one `get_config()` file per experiment, each documenting the command that
runs it and the result it gives (`--config=configs/NAME.py`). Installed with the package as
`metaiqa_jax.configs` (a link to this folder), so the console scripts' defaults (the demo's, the
transfer experiment's) are these files.
"""
