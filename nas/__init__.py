"""nas: latency-driven neural architecture search for efficient vision transformers."""
__version__ = "0.1.0"
