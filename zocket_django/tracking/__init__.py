"""Recording state changes as they happen, so that a step costs what it changed.

``Recorder`` is the runtime's one entry point; ``shape_for`` tells whether a
state model can be recorded. See docs/architecture.md ("Recorded state").
"""

from .recorder import Recorder, shape_for

__all__ = ["Recorder", "shape_for"]
