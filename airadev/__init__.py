"""airadev: the local development orchestrator of the AiRa stack."""

__version__ = "0.1.0"
