"""The session: its state machine (`machine`), the actions it asks for (`steps`), how they are
carried out (`effects`), and the owner thread that runs them (`owner`)."""
from .owner import CommandError, Session, ShuttingDown
from .steps import Command

__all__ = ["Command", "CommandError", "Session", "ShuttingDown"]
