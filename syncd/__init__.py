"""syncd: integrations as code for HipChat notifiers."""

__version__ = "0.2.0"
