"""Offline `evaluate` modules wrapping `madx.metrics`; load them with `evaluate.load(evaluate_module_path(name))`.

Each sub-folder holds one script named like the folder, the layout `evaluate.load(<folder>)` expects.
`evaluate` copies the script into its modules cache and imports it from there, so the scripts import
`madx` absolutely (it must be importable, e.g. installed) and contain no logic of their own.
"""
