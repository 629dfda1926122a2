# A package so these modules (test_bottleneck.py, ...) do not collide with the same basenames
# under tests/adapters/ in pytest's default import mode.
