"""Model folders of other libraries in and out (Hugging Face), local files only."""

from lmforge.hub.hf import export_hf, import_hf

__all__ = ["export_hf", "import_hf"]
