"""Back-ends: classifiers on front-end features (AASIST/AASIST-L, SSL-AASIST, LCNN, ResNet, pooled linear, GMM)."""

from sddkit.registry import Registry

BACKENDS = Registry("backend")

__all__ = ["BACKENDS"]

from sddkit.backends import aasist, gmm, lcnn, linear, resnet, ssl_aasist  # noqa: F401,E402
