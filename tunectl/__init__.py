"""tunectl: tune deep-learning hyperparameters the way a practitioner does by hand."""

__version__ = "0.1.0"
