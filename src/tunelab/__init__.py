"""tunelab: from a file of dialogues to a fine-tuned chat model, on any provider or locally."""

__version__ = "0.1.0"
__all__ = ["__version__"]
