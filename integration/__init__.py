"""pyctl integration tests and the real test bed they run on (see testbed.py, images.py)."""
