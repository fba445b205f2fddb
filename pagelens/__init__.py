"""pagelens: multimodal document retrieval and question answering.

Stage packages (``ingest``, ``index``, ``retrieve``, ``answer``, ``api``, ``ui``) hold the logic;
this package holds what crosses them: settings, errors, the service wiring and the CLI.
"""

__version__ = "0.1.0"
