"""The model families this service serves, in the order they are asked to recognise a directory.

Adding a family is a module here and one line in FAMILIES; the most specific
recognisers come first, and the sentence-transformers family takes whatever
is left.
"""

from __future__ import annotations

from .base import Lane, ServedModel
from .bge_m3 import BGEM3Model
from .clap import ClapModel
from .classifier import SequenceClassifier
from .cross_encoder import CrossEncoderModel
from .decoder_embedder import DecoderEmbedder
from .dual_encoder import DualEncoderModel
from .llm_reranker import LLMReranker
from .multi_vector import MultiVectorModel
from .multimodal import MultimodalModel
from .sentence_transformer import SentenceTransformerModel
from .sparse_encoder import SparseEncoderModel
from .visual_retriever import VisualRetrieverModel
from .vlm_embedder import VLMEmbedder

FAMILIES: tuple[type[ServedModel], ...] = (
    VLMEmbedder,
    DualEncoderModel,
    ClapModel,
    MultimodalModel,
    LLMReranker,
    SequenceClassifier,
    CrossEncoderModel,
    SparseEncoderModel,
    VisualRetrieverModel,
    MultiVectorModel,
    BGEM3Model,
    DecoderEmbedder,
    SentenceTransformerModel,
)

__all__ = ["FAMILIES", "Lane", "ServedModel"]
