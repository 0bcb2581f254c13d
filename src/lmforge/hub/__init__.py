"""Model folders of other libraries in and out (Hugging Face), local files only; ``embed``:
sentence embeddings from an encoder of any such folder."""

from lmforge.hub.hf import export_hf, import_hf

__all__ = ["export_hf", "import_hf"]
