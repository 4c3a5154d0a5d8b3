"""sddkit: generalizable speech deepfake detection.

Score convention everywhere: higher = more bona fide.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
