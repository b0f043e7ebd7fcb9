"""What a model can do, as plain strings: the API imports these (without torch) to say what a route needs,
and reads them back from a model's `describe()`."""

from __future__ import annotations

EMBED_TEXT = "embed:text"
EMBED_IMAGE = "embed:image"
EMBED_AUDIO = "embed:audio"
EMBED_VIDEO = "embed:video"
# a text and an image together in one vector (vision-language embedders such as GME)
EMBED_INTERLEAVED = "embed:interleaved"
SPARSE = "sparse"
COLBERT = "colbert"
# Per-patch vectors of a page image, and no single vector (visual late-interaction models: ColPali, ColQwen2).
COLBERT_IMAGE = "colbert:image"
RERANK = "rerank"
# Every label's score for a text or a pair of texts (sequence classifiers; a cross-encoder's one score).
CLASSIFY = "classify"
# Every token's hidden state before pooling (text-embeddings-inference's /embed_all).
TOKENS = "tokens"

# Per-input outputs a request may ask for, in the order responses list them.
OUTPUT_TYPES = ("dense", "sparse", "colbert")
DENSE = frozenset({"dense"})

# Where an optional head comes from, for the 400 that says a model lacks it.
HEAD_FILES = {"sparse": "sparse_linear.pt", "colbert": "colbert_linear.pt"}

# The modality a kind of row embeds -> the capability it needs.
MODALITY_CAPABILITY = {"text": EMBED_TEXT, "image": EMBED_IMAGE, "audio": EMBED_AUDIO, "video": EMBED_VIDEO}
