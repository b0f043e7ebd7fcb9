"""Tiny models built from a transformers config with random weights, saved the way
sentence-transformers saves them, so tests load them through the real loading code."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from app.config import default_model_path


def tiny_bert_config(tokenizer, max_position_embeddings: int = 128, **extra) -> BertConfig:
    """The tiny BERT every BERT-based test model is: 2 layers, 32 wide, `tokenizer`'s vocabulary."""
    return BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        **extra,
    )


def tiny_bert(directory: Path, max_position_embeddings: int = 128, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with the default model's tokenizer, as a plain HF directory."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = tiny_bert_config(tokenizer, max_position_embeddings)
    BertModel(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_sentence_transformer(
    directory: Path,
    *,
    pooling="mean",
    dense: int | None = None,
    normalize=True,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    include_prompt: bool = True,
    max_seq_length: int = 64,
) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    base = tiny_bert(directory.parent / f"{directory.name}-base")
    modules = [
        Transformer(str(base), max_seq_length=max_seq_length),
        Pooling(32, pooling_mode=pooling, include_prompt=include_prompt),
    ]
    if dense:
        width = 32 * (1 if isinstance(pooling, str) else len(pooling))
        modules.append(Dense(width, dense, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(
        modules=modules, prompts=prompts or {}, default_prompt_name=default_prompt_name, device="cpu"
    )
    model.save(str(directory))
    return directory


def _image_processor(name: str, **kwargs):
    """The PIL-backed processor where transformers 5 has one (no torchvision needed), else the classic one."""
    import transformers

    cls = getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)
    return cls(**kwargs)


def _text_config(tokenizer, max_positions: int) -> dict:
    return dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )


_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def tiny_vision_model(directory: Path, kind: str = "clip", seed: int = 0) -> Path:
    """A 2-layer dual encoder (clip, siglip or siglip2) with random weights and its processor.

    The text side uses the default model's WordPiece tokenizer (no tokenizer files of
    the real families can be fetched here); its [SEP] is the end-of-text token CLIP pools.
    """
    import transformers

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    # As the real checkpoints ship them: the tokenizer's limit is the text tower's context.
    tokenizer.model_max_length = 77 if kind == "clip" else 16
    if kind == "clip":
        config = transformers.CLIPConfig(
            text_config=_text_config(tokenizer, 77),
            vision_config=dict(_VISION, image_size=32, patch_size=8),
            projection_dim=24,
        )
        model = transformers.CLIPModel(config)
        images = _image_processor(
            "CLIPImageProcessor", size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
        processor = transformers.CLIPProcessor(image_processor=images, tokenizer=tokenizer)
    elif kind == "siglip":
        config = transformers.SiglipConfig(
            text_config=_text_config(tokenizer, 16), vision_config=dict(_VISION, image_size=32, patch_size=8)
        )
        model = transformers.SiglipModel(config)
        images = _image_processor("SiglipImageProcessor", size={"height": 32, "width": 32})
        processor = transformers.SiglipProcessor(image_processor=images, tokenizer=tokenizer)
    elif kind == "siglip2":
        # Siglip2Processor's call-time defaults (16-pixel patches, at most 256) win over its
        # image processor's settings, so the tiny vision tower takes exactly those.
        config = transformers.Siglip2Config(
            text_config=_text_config(tokenizer, 16), vision_config=dict(_VISION, patch_size=16, num_patches=256)
        )
        model = transformers.Siglip2Model(config)
        images = _image_processor("Siglip2ImageProcessor", patch_size=16, max_num_patches=256)
        processor = transformers.Siglip2Processor(image_processor=images, tokenizer=tokenizer)
    else:
        raise ValueError(kind)
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


M3_WORDS = (
    "the cat sat on mat dog ran in park a an and of to is was for with hybrid search dense sparse "
    "lexical vector token query passage retrieval model embedding colbert late interaction score"
).split()


def xlmr_style_tokenizer():
    """A word-level fast tokenizer with XLM-R's special tokens and ids (<s>=0, <pad>=1, </s>=2, <unk>=3),
    standing in for XLM-R's SentencePiece model, which cannot be fetched here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + list(dict.fromkeys(M3_WORDS)) + ["<mask>"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=64,
    )


def tiny_bge_m3(directory: Path, *, sparse: bool = True, colbert: bool = True, seed: int = 0) -> Path:
    """A 2-layer XLM-RoBERTa in BGE-M3's layout: the encoder, plus sparse_linear.pt and colbert_linear.pt."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(seed)
    tokenizer = xlmr_style_tokenizer()
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=66,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    XLMRobertaModel(config, add_pooling_layer=False).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if sparse:
        torch.save(torch.nn.Linear(32, 1).state_dict(), directory / "sparse_linear.pt")
    if colbert:
        torch.save(torch.nn.Linear(32, 32).state_dict(), directory / "colbert_linear.pt")
    return directory


DECODER_CORPUS = [
    "Instruct: Given a web search query, retrieve relevant passages that answer the query",
    "Query: what is the capital of France? Paris is the capital and largest city of France.",
    "The quick brown fox jumps over the lazy dog. Embeddings turn text into vectors.",
    "Large language models pool the hidden state of the last token into a sentence embedding.",
    "A decoder attends only to earlier positions; padding on the right never reaches the last real token.",
] * 20

QWEN3_QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def byte_level_bpe(corpus: list[str], specials: list[str], vocab_size: int):
    """A byte-level BPE trained here on `corpus` (Qwen's tokenizer files cannot be fetched), `specials` first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(corpus, trainer)
    return backend


def qwen_style_tokenizer():
    """A byte-level BPE trained here, with Qwen's special tokens, closing every input with <|endoftext|>
    as Qwen3-Embedding's tokenizer does, and padding on the left as it ships."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = byte_level_bpe(DECODER_CORPUS, specials, 400)
    eos = backend.token_to_id("<|endoftext|>")
    backend.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B <|endoftext|>", special_tokens=[("<|endoftext|>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
        padding_side="left",
        model_max_length=131072,
    )


def tiny_qwen3(directory: Path, seed: int = 0, max_positions: int = 4096) -> Path:
    """A 2-layer Qwen3ForCausalLM with the built tokenizer, as a plain Hugging Face directory
    (gte-Qwen-style: a causal LM's config and weights, no sentence-transformers files)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    tokenizer = qwen_style_tokenizer()
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        architectures=["Qwen3ForCausalLM"],
    )
    model = Qwen3ForCausalLM(config).eval()
    # Random weights are too small to tell positions apart; scale them so the test can fail.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(4.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_qwen3_embedding(directory: Path, *, max_seq_length: int = 48, seed: int = 0) -> Path:
    """A tiny Qwen3 in Qwen3-Embedding's sentence-transformers layout: last-token pooling, Normalize,
    the query instruction as a named prompt."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    base = tiny_qwen3(directory.parent / f"{directory.name}-base", seed=seed)
    transformer = Transformer(str(base), max_seq_length=max_seq_length)
    modules = [transformer, Pooling(32, pooling_mode="lasttoken"), Normalize()]
    model = SentenceTransformer(modules=modules, prompts={"query": QWEN3_QUERY_PROMPT, "document": ""}, device="cpu")
    model.save(str(directory))
    return directory


def three_models(root: Path) -> dict[str, Path]:
    """The default model, a tiny decoder-LLM embedder and a tiny CLIP: one instance's MODELS, by name."""
    return {
        "minilm": default_model_path(),
        "qwen3": tiny_qwen3_embedding(root / "qwen3-embedding"),
        "clip": tiny_vision_model(root / "clip-tiny", "clip"),
    }


def models_setting(dirs: dict[str, Path]) -> str:
    return ",".join(f"{name}={path}" for name, path in dirs.items())


def _sharpen(model: torch.nn.Module, factor: float = 3.0) -> None:
    """Scale random weights up so scores differ by more than rounding: a test that mixes up
    pairs, token types or positions then fails."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(factor)


def tiny_cross_encoder(
    directory: Path, kind: str = "bert", *, sentence_transformers: bool = True, seed: int = 0
) -> Path:
    """A one-label sequence-classification model (BERT with the default model's WordPiece tokenizer, or
    XLM-RoBERTa with the XLM-R-style one), saved as sentence-transformers' CrossEncoder saves it, or as a
    plain Hugging Face directory."""
    from transformers import (
        BertForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    torch.manual_seed(seed)
    if kind == "bert":
        tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
        config = tiny_bert_config(tokenizer, 64, num_labels=1)
        model = BertForSequenceClassification(config)
    elif kind == "xlmr":
        tokenizer = xlmr_style_tokenizer()
        config = XLMRobertaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=66,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
            num_labels=1,
        )
        model = XLMRobertaForSequenceClassification(config)
    else:
        raise ValueError(kind)
    _sharpen(model.eval())
    plain = directory if not sentence_transformers else directory.parent / f"{directory.name}-hf"
    model.save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    if sentence_transformers:
        from sentence_transformers import CrossEncoder

        CrossEncoder(str(plain), device="cpu").save(str(directory))
    return directory


RERANKER_CORPUS = (
    DECODER_CORPUS
    + [
        "<Instruct>: Given a web search query, retrieve relevant passages that answer the query",
        "<Query>: what is the capital of France?\n<Document>: Paris is the capital of France.",
        "Judge whether the Document meets the requirements based on the Query and the Instruct provided.",
        'Note that the answer can only be "yes" or "no".',
        "yes\nno\nyes\nno\nyes\nno",
    ]
    * 10
)


def tiny_qwen3_reranker(directory: Path, seed: int = 0, template: dict | None = None) -> Path:
    """A 2-layer Qwen3ForCausalLM in Qwen3-Reranker's layout: a byte-level BPE trained here with Qwen's chat
    tokens and single "yes" / "no" tokens, adding no special tokens of its own (as Qwen3's tokenizer)."""
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = byte_level_bpe(RERANKER_CORPUS, specials, 500)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials[1:],
        padding_side="left",
        model_max_length=131072,
    )
    assert len(tokenizer("yes", add_special_tokens=False)["input_ids"]) == 1
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = Qwen3ForCausalLM(config).eval()
    _sharpen(model)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if template is not None:
        import json

        (directory / "reranker.json").write_text(json.dumps(template))
    return directory


QWEN_VL_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
GME_CORPUS = (
    DECODER_CORPUS
    + [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
        "Find an image that matches the given text. What kind of car is this? A red square on a blue background.",
        "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>",
    ]
    * 10
)


def _qwen_vl_tokenizer(padding_side: str = "right"):
    """A byte-level BPE trained here with Qwen's chat and vision tokens (Qwen2-VL's cannot be fetched)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(GME_CORPUS, QWEN_VL_SPECIALS, 500),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_VL_SPECIALS[1:],
        padding_side=padding_side,
        model_max_length=32768,
    )


def _qwen2_vl_config(tokenizer, *, width: int = 32, layers: int = 2, patch: int = 4) -> dict:
    """A Qwen2-VL of `layers` layers `width` wide (text and vision towers), `patch`-pixel patches merged 2 x 2."""
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_VL_SPECIALS}
    return dict(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            # temporal, height, width rotary sections over half a head, split as Qwen2-VL's [16, 24, 24] of 64
            rope_scaling={"type": "mrope", "mrope_section": _mrope_sections(width // 4)},
            pad_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            bos_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=layers,
            embed_dim=width,
            hidden_size=width,
            num_heads=4,
            mlp_ratio=2,
            patch_size=patch,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_channels=3,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def tiny_qwen2_vl(directory: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2-VL in GME's layout (Qwen2VLForConditionalGeneration, its processor): a byte-level BPE
    trained here with Qwen's chat and vision tokens, and a vision tower with 4-pixel patches."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = _qwen_vl_tokenizer()
    config = Qwen2VLConfig(**_qwen2_vl_config(tokenizer), tie_word_embeddings=True)
    model = Qwen2VLForConditionalGeneration(config).eval()
    _sharpen(model, 2.0)
    model.save_pretrained(directory)
    images = _image_processor(
        "Qwen2VLImageProcessor", patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=8 * 8, max_pixels=64 * 64
    )
    # The files Qwen2VLProcessor would write; the processor object itself needs torchvision (for videos).
    images.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_classifier(
    directory: Path, labels: list[str], *, problem_type: str | None = None, seed: int = 0, cross_encoder_files=False
) -> Path:
    """A BERT sequence classifier with the default model's WordPiece tokenizer and `labels` as its id2label
    (`problem_type`: multi_label_classification or regression as transformers stores it); with
    `cross_encoder_files`, saved as sentence-transformers' CrossEncoder saves an NLI model."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = tiny_bert_config(
        tokenizer,
        64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=problem_type,
    )
    model = BertForSequenceClassification(config).eval()
    _sharpen(model)
    if cross_encoder_files:
        from sentence_transformers import CrossEncoder

        plain = directory.parent / f"{directory.name}-hf"
        model.save_pretrained(plain)
        tokenizer.save_pretrained(plain)
        CrossEncoder(str(plain), device="cpu").save(str(directory))
        return directory
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_masked_lm(directory: Path, *, seed: int = 0, bias: float = -0.35) -> Path:
    """A 2-layer BertForMaskedLM with the default model's tokenizer, as a plain HF directory. Its output bias
    is lowered by `bias` so that, as a trained SPLADE model's, most of the vocabulary gets no weight."""
    from transformers import BertForMaskedLM

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    model = BertForMaskedLM(tiny_bert_config(tokenizer)).eval()
    with torch.no_grad():
        model.cls.predictions.bias += bias
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_splade(
    directory: Path,
    *,
    pooling: str = "max",
    activation: str = "relu",
    legacy: bool = False,
    prompts: dict[str, str] | None = None,
    max_active_dims: int | None = None,
    seed: int = 0,
) -> Path:
    """SPLADE saved by sentence-transformers' SparseEncoder: a fill-mask Transformer, then SpladePooling. With
    `legacy`, modules.json names the v5 classes (`sentence_transformers.sparse_encoder.models.MLMTransformer`,
    `...SpladePooling`) as naver/splade-v3 and prithivida/Splade_PP_en_v1 ship them."""
    import json

    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    base = tiny_masked_lm(directory.parent / f"{directory.name}-mlm", seed=seed)
    modules = [
        Transformer(str(base), transformer_task="fill-mask", max_seq_length=64),
        SpladePooling(pooling, activation_function=activation),
    ]
    SparseEncoder(modules=modules, prompts=prompts, max_active_dims=max_active_dims, device="cpu").save(str(directory))
    if legacy:
        listing = json.loads((directory / "modules.json").read_text())
        for module, name in zip(listing, ("MLMTransformer", "SpladePooling")):
            module["type"] = f"sentence_transformers.sparse_encoder.models.{name}"
        (directory / "modules.json").write_text(json.dumps(listing, indent=2))
    return directory


def tiny_inference_free_splade(directory: Path, *, seed: int = 0) -> Path:
    """An OpenSearch-style doc-only sparse encoder: a Router whose query side is an IDF table
    (SparseStaticEmbedding, no forward pass) and whose document side is SPLADE with log1p_relu."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router, Transformer
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, SpladePooling

    base = tiny_masked_lm(directory.parent / f"{directory.name}-mlm", seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    generator = torch.Generator().manual_seed(seed)
    idf = torch.rand(tokenizer.vocab_size, generator=generator) * 5
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer, weight=idf, frozen=True)],
        document_modules=[
            Transformer(str(base), transformer_task="fill-mask", max_seq_length=64),
            SpladePooling("max", activation_function="log1p_relu"),
        ],
    )
    SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu").save(str(directory))
    return directory


def tiny_multi_vector(
    directory: Path,
    *,
    query_length: int = 16,
    document_length: int = 24,
    attend: bool = False,
    similarity: str | None = None,
    seed: int = 0,
) -> Path:
    """A ColBERT saved by sentence-transformers' MultiVectorEncoder: a Transformer with query expansion (mask
    tokens to `query_length`, attended or not) and a document length, a token-level Dense to 16, the
    MultiVectorMask (punctuation skip-list on documents) and a token-level Normalize; [Q]/[D] prompts."""
    import string

    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    base = tiny_bert(directory.parent / f"{directory.name}-base", seed=seed)
    torch.manual_seed(seed)
    expansion = {"strategy": "fixed", "attend": attend, "length": query_length}
    modules = [
        Transformer(str(base), query_expansion=expansion, document_length=document_length),
        Dense(32, 16, bias=False, module_input_name="token_embeddings"),
        MultiVectorMask(skiplist_words=list(string.punctuation)),
        Normalize(module_input_name="token_embeddings"),
    ]
    encoder = MultiVectorEncoder(modules=modules, prompts={"query": "[Q] ", "document": "[D] "}, device="cpu")
    if similarity is not None:
        encoder.similarity_fn_name = similarity
    encoder.save(str(directory))
    return directory


def tiny_pylate_colbert(directory: Path, *, seed: int = 0) -> Path:
    """A ColBERT as PyLate 1.x-3.x saves it: `model_type: ColBERT` with its prefixes ([Q] and [D] added to the
    tokenizer), query and document lengths and expansion flags at the top of config_sentence_transformers.json;
    modules.json lists only the Transformer and `pylate.models.Dense.Dense` (PyLate applied the skip-list and
    the normalisation in code)."""
    import json

    from safetensors.torch import save_file

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    tokenizer.add_tokens(["[Q] ", "[D] "])
    model = BertModel(tiny_bert_config(tokenizer)).eval()
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "1_Dense").mkdir()
    save_file({"linear.weight": torch.randn(16, 32) / 6}, str(directory / "1_Dense/model.safetensors"))
    dense = {
        "in_features": 32,
        "out_features": 16,
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    (directory / "1_Dense/config.json").write_text(json.dumps(dense))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules))
    config = {
        "model_type": "ColBERT",
        "query_prefix": "[Q] ",
        "document_prefix": "[D] ",
        "query_length": 12,
        "document_length": 20,
        "attend_to_expansion_tokens": False,
        "skiplist_words": list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "MaxSim",
    }
    (directory / "config_sentence_transformers.json").write_text(json.dumps(config))
    return directory


def tiny_stanford_colbert(directory: Path, *, seed: int = 0) -> Path:
    """A Stanford ColBERT checkpoint (colbert-ir/colbertv2.0's layout): `architectures: ["HF_ColBERT"]`, the
    encoder's weights under `bert.` beside the projection's `linear.weight`, and artifact.metadata with the
    [unused0]/[unused1] markers, the query and document lengths and the punctuation mask."""
    import json

    from safetensors.torch import save_file

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = tiny_bert_config(tokenizer)
    config.architectures = ["HF_ColBERT"]
    model = BertModel(config).eval()
    weights = {f"bert.{name}": tensor.contiguous() for name, tensor in model.state_dict().items()}
    weights["linear.weight"] = torch.randn(16, 32) / 6
    directory.mkdir(parents=True)
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    metadata = {
        "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]",
        "query_maxlen": 12,
        "doc_maxlen": 20,
        "mask_punctuation": True,
        "attend_to_mask_tokens": False,
        "similarity": "cosine",
    }
    (directory / "artifact.metadata").write_text(json.dumps(metadata))
    return directory


def _hub_processor_layout(directory: Path) -> None:
    """transformers 5 nests the image processor in processor_config.json; checkpoints on the hub keep it in
    preprocessor_config.json beside a processor_config.json of the processor's own settings."""
    config = json.loads((directory / "processor_config.json").read_text())
    images = {**config.pop("image_processor"), "processor_class": config["processor_class"]}
    (directory / "preprocessor_config.json").write_text(json.dumps(images, indent=2))
    (directory / "processor_config.json").write_text(json.dumps(config, indent=2))


def tiny_colpali(directory: Path, *, seed: int = 0, image_size: int = 32, patch: int = 8) -> Path:
    """A 2-layer ColPaliForRetrieval (PaliGemma: a SigLIP vision tower, a Gemma decoder) with its processor, as
    transformers saves it: a byte-level BPE trained here with Gemma's special tokens, fixed-size page images."""
    from transformers import ColPaliConfig, ColPaliForRetrieval, ColPaliProcessor, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(DECODER_CORPUS, specials, 400),
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        additional_special_tokens=["<image>"],
        padding_side="right",
        model_max_length=2048,
    )
    tokens = (image_size // patch) ** 2
    images = _image_processor(
        "SiglipImageProcessor", size={"height": image_size, "width": image_size}, image_seq_length=tokens
    )
    processor = ColPaliProcessor(image_processor=images, tokenizer=tokenizer)
    text = dict(
        model_type="gemma",
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision = dict(
        model_type="siglip_vision_model", **_VISION, image_size=image_size, patch_size=patch, projection_dim=32
    )
    config = ColPaliConfig(
        vlm_config=dict(
            model_type="paligemma",
            text_config=text,
            vision_config=vision,
            image_token_index=processor.image_token_id,
            projection_dim=32,
            hidden_size=32,
            vocab_size=len(tokenizer),
        ),
        embedding_dim=16,
    )
    model = ColPaliForRetrieval(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def tiny_colqwen2(
    directory: Path, *, seed: int = 0, width: int = 32, layers: int = 2, patch: int = 4, max_pixels: int = 64 * 64
) -> Path:
    """A 2-layer ColQwen2ForRetrieval (a Qwen2-VL with 4-pixel patches) with its processor in the hub's layout
    (preprocessor_config.json beside processor_config.json), Qwen's tokenizer padding on the left. The
    benchmarks build a bigger one (width, layers, the real 14-pixel patches and page sizes)."""
    from transformers import ColQwen2Config, ColQwen2ForRetrieval, ColQwen2Processor

    torch.manual_seed(seed)
    tokenizer = _qwen_vl_tokenizer(padding_side="left")
    vlm = {"model_type": "qwen2_vl", **_qwen2_vl_config(tokenizer, width=width, layers=layers, patch=patch)}
    model = ColQwen2ForRetrieval(ColQwen2Config(vlm_config=vlm, embedding_dim=16)).eval()
    _sharpen(model, 2.0)
    images = _image_processor(
        "Qwen2VLImageProcessor",
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=4 * patch * patch,
        max_pixels=max_pixels,
    )
    model.save_pretrained(directory)
    ColQwen2Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(directory)
    _hub_processor_layout(directory)
    return directory


def _mrope_sections(head_dim: int) -> list[int]:
    half = head_dim // 2
    temporal = half // 4
    return [temporal, (half - temporal) // 2, half - temporal - (half - temporal) // 2]


def tiny_clap(directory: Path, *, seed: int = 0, sampling_rate: int = 8000, seconds: int = 2) -> Path:
    """A 2-layer ClapModel (a RoBERTa-style text tower, an HTSAT audio tower on a 32 x 32 spectrogram) with its
    processor as LAION's unfused checkpoints ship it (`rand_trunc`, `repeatpad`), at `sampling_rate` and a
    window of `seconds`; the default model's tokenizer stands in for CLAP's RoBERTa one."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    # about 60 spectrogram frames a window: the tower takes 64 (a 32 x 32 spectrogram of 16 mels, 2 rows deep)
    hop = sampling_rate * seconds // 60
    features = ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=sampling_rate,
        hop_length=hop,
        max_length_s=seconds,
        fft_window_size=4 * hop,
        nb_max_samples=sampling_rate * seconds,
        truncation="rand_trunc",
        padding="repeatpad",
        frequency_max=sampling_rate // 2,
    )
    config = ClapConfig(
        text_config=dict(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=130,
            projection_dim=16,
            pad_token_id=tokenizer.pad_token_id,
        ),
        audio_config=dict(
            spec_size=32,
            num_mel_bins=16,
            window_size=4,
            patch_size=4,
            patch_stride=(4, 4),
            hidden_size=32,
            depths=[1, 1],
            num_attention_heads=[2, 2],
            patch_embeds_hidden_size=16,
            projection_dim=16,
            enable_fusion=False,
        ),
        projection_dim=16,
    )
    model = ClapModel(config).eval()
    _sharpen(model, 2.0)
    model.save_pretrained(directory)
    ClapProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def tiny_st6_multimodal(directory: Path, kind: str = "clip", *, normalize: bool = False, prompts=None) -> Path:
    """A tiny CLIP or SigLIP as sentence-transformers 6 saves it: one `Transformer` module whose modality config
    maps text and image to the model's get_*_features (and a `Normalize` after it, with `normalize`)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer

    source = tiny_vision_model(directory.parent / f"{directory.name}-source", kind)
    modules = [Transformer(str(source))]
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, prompts=prompts or {}, device="cpu").save(str(directory))
    return directory


def tiny_colmodernvbert(directory: Path, *, seed: int = 0) -> Path:
    """A 2-layer ColModernVBertForRetrieval (ModernBERT and SigLIP) with its processor, Idefics3-style image
    splitting, as transformers saves it; its processor gives images pixels without token ids."""
    from transformers import (
        ColModernVBertConfig,
        ColModernVBertForRetrieval,
        ColModernVBertProcessor,
        PreTrainedTokenizerFast,
    )

    torch.manual_seed(seed)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|begin_of_text|>", "<fake_token_around_image>"]
    specials += ["<image>", "<end_of_utterance>", "<global-img>"]
    specials += [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(DECODER_CORPUS, specials, 500),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        additional_special_tokens=specials[5:],
        model_max_length=1024,
    )
    images = _image_processor(
        "Idefics3ImageProcessor",
        size={"longest_edge": 64},
        max_image_size={"longest_edge": 32},
        do_image_splitting=True,
    )
    processor = ColModernVBertProcessor(image_processor=images, tokenizer=tokenizer, image_seq_len=16)
    text = dict(
        model_type="modernbert",
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=1024,
        global_attn_every_n_layers=1,
        local_attention=8,
    )
    vision = dict(model_type="siglip_vision_model", **_VISION, image_size=32, patch_size=4)
    config = ColModernVBertConfig(
        vlm_config=dict(
            model_type="modernvbert",
            text_config=text,
            vision_config=vision,
            image_token_id=processor.image_token_id,
            pixel_shuffle_factor=2,
        ),
        embedding_dim=16,
    )
    ColModernVBertForRetrieval(config).eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
# EmbeddingGemma 2's media tokens: an image's (begin, soft token, end), an audio clip's, and a video frame's soft
# token (its frames reuse the image's begin and end)
GEMMA_MEDIA = {
    "boi_token": "<|image>",
    "image_token": "<|image|>",
    "eoi_token": "<image|>",
    "boa_token": "<|audio>",
    "audio_token": "<|audio|>",
    "eoa_token": "<audio|>",
}


# A chat template that writes each part of a message in order, a media part as its placeholder (the processor
# expands it): what lets sentence-transformers take several modalities in one input (its message modality)
GEMMA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}<|image|>"
    "{% elif part['type'] == 'audio' %}<|audio|>{% elif part['type'] == 'video' %}<|video|>{% endif %}"
    "{% endfor %}{% endfor %}"
)


def tiny_embedding_gemma2(directory: Path, *, seed: int = 0, max_frames: int = 8, chat: bool = True) -> Path:
    """A 2-layer EmbeddingGemma 2 (text, vision and audio towers; the vision tower reads video frames too) with
    its processor (Gemma 4's image processor and audio feature extractor, its own video processor sampling 1
    frame a second up to `max_frames`; with `chat`, a chat template, so that sentence-transformers takes mixed
    inputs and messages) and a tokenizer trained here with Gemma's special and media tokens, as
    google/embeddinggemma-2 ships: the model and processor files at the top, sentence-transformers 6's modules
    (Transformer at the root, 1_Pooling mean, 2_Normalize) beside them. Needs torchvision (its video
    processor)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from tokenizers import processors
    from transformers import (
        EmbeddingGemma2Config,
        EmbeddingGemma2Model,
        EmbeddingGemma2Processor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.embedding_gemma2.video_processing_embedding_gemma2 import EmbeddingGemma2VideoProcessor
    from transformers.models.gemma4 import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    backend = byte_level_bpe(DECODER_CORPUS, GEMMA_SPECIALS + [*GEMMA_MEDIA.values(), "<|video|>"], 400)
    bos, eos = backend.token_to_id("<bos>"), backend.token_to_id("<eos>")
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", pair="<bos> $A <eos> $B <eos>", special_tokens=[("<bos>", bos), ("<eos>", eos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        mask_token="<mask>",
        extra_special_tokens=GEMMA_MEDIA,
        padding_side="right",
        model_max_length=8192,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in [*GEMMA_MEDIA.values(), "<|video|>"]}
    config = EmbeddingGemma2Config(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            global_head_dim=16,
            sliding_window=8,
            sliding_window_pattern=2,
            hidden_size_per_layer_input=8,
            embedding_dim=24,
            max_position_embeddings=8192,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
            bos_token_id=bos,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=16,
            patch_size=4,
            pooling_kernel_size=2,
            position_embedding_size=64,
        ),
        # the audio tower's first convolution has as many channels as the 128 mel bins (its projection's size)
        audio_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            subsampling_conv_channels=[128, 4],
            conv_kernel_size=3,
            attention_chunk_size=4,
            attention_context_left=5,
            output_proj_dims=32,
        ),
        boi_token_id=ids["<|image>"],
        eoi_token_id=ids["<image|>"],
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        boa_token_id=ids["<|audio>"],
        eoa_token_index=ids["<audio|>"],
        audio_token_id=ids["<|audio|>"],
    )
    torch.manual_seed(seed)
    source = directory.parent / f"{directory.name}-source"
    EmbeddingGemma2Model(config).eval().save_pretrained(source)
    # 70 soft tokens an image or frame (the fewest the processors take), 4-pixel patches pooled 2 x 2
    vision = dict(patch_size=4, max_soft_tokens=70, pooling_kernel_size=2)
    EmbeddingGemma2Processor(
        feature_extractor=Gemma4AudioFeatureExtractor(),
        image_processor=Gemma4ImageProcessorPil(**vision),
        tokenizer=tokenizer,
        video_processor=EmbeddingGemma2VideoProcessor(**vision, max_frames=max_frames),
        image_seq_length=70,
        audio_seq_length=64,
        chat_template=GEMMA_CHAT_TEMPLATE if chat else None,
    ).save_pretrained(source)
    transformer = Transformer(str(source))
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(directory))
    return directory
