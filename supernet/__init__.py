"""The weight-sharing supernet (elastic layers) and the plain models it extracts."""
from supernet.static import EfficientFormerNet
from supernet.supernet import Supernet

__all__ = ["Supernet", "EfficientFormerNet"]
