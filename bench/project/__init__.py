"""The bench's own Django project: a counter and a list actor, and raw Channels baselines."""
