"""realm: Retrieval-Augmented Language Model pre-training, end to end."""
__version__ = "0.1.0"
