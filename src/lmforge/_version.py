"""The one version of lmforge: the package metadata and every model folder's stamp read it."""

__version__ = "0.1.0"
