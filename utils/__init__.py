"""The book's own package: the code each chapter builds and later chapters import.

One module per idea, in the order the book teaches them. Each module's docstring
names the chapter that builds it; a module imports only from earlier chapters.

Importing ``utils`` is cheap: it pulls in the setup helpers only. Import the
concept modules directly, e.g. ``from utils.attention import MultiHeadAttention``.
"""

from utils.environment import pick_device, seed_everything, setup_notebook

__all__ = ["pick_device", "seed_everything", "setup_notebook"]
