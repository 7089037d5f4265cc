"""Pli: secure health messaging for French health professionals and their patients."""

__version__ = "0.1.0"
