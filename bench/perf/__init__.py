"""``madx bench perf``: step time, tokens/s, peak memory and MFU of MAD-X's training and
evaluation steps beside full fine-tuning, on random-init XLM-R-shaped models (see ``cli.py``)."""
