"""Model folders of other libraries in and out (Hugging Face), local files only."""

from lmforge.hub.hf import (
    embed,
    export_hf,
    import_hf,
    load_encoder,
    save_embeddings,
    save_model_folder,
)

__all__ = [
    "embed",
    "export_hf",
    "import_hf",
    "load_encoder",
    "save_embeddings",
    "save_model_folder",
]
