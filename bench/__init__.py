"""Benchmarks of zocket-django against raw Channels (not tests): ``python -m bench``."""
