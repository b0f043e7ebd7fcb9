"""Whether a model can do what a request asks, with the messages that say what it does instead: the one
place these checks are made, before anything is tokenised, decoded or fetched."""

from __future__ import annotations

from .capabilities import (
    CLASSIFY,
    COLBERT,
    COLBERT_IMAGE,
    EMBED_IMAGE,
    EMBED_INTERLEAVED,
    EMBED_TEXT,
    HEAD_FILES,
    MODALITY_CAPABILITY,
    RERANK,
    SPARSE,
    TOKENS,
)
from .errors import InvalidInput, Unsupported


def check(model, capability: str, field: str = "input") -> None:
    """The caller's 4xx unless `model` can do `capability`."""
    modality = next((name for name, needed in MODALITY_CAPABILITY.items() if needed == capability), None)
    if modality is not None:
        require(model, modality, field)
    elif capability == EMBED_INTERLEAVED:  # an image at least: whether it takes both together is the call's
        require(model, "image", field)
    elif capability == COLBERT_IMAGE:
        require_multi_vector_images(model, field)
    elif capability == RERANK:
        require_rerank(model)
    elif capability == CLASSIFY:
        require_classify(model, field)
    else:
        check_outputs(model, [capability], field)


def check_text(model, request) -> None:
    """An embedding request for texts: the dense vector where it asks for one, and every other output it
    names. A sparse encoder takes texts but gives no dense vector."""
    outputs = request.outputs
    if "dense" in outputs or not (is_sparse_encoder(model) or is_multi_vector(model)):
        require(model, "text", request.field)
    check_outputs(model, outputs, request.outputs_field)


def require(model, modality: str, field: str) -> None:
    """A 400 that says what the model does, unless it embeds `modality`."""
    if MODALITY_CAPABILITY[modality] in model.capabilities:
        return
    if modality == "text" and is_sparse_encoder(model):
        raise Unsupported(
            f"the model {model.name!r} is a sparse encoder: it gives each text a sparse vector of (token id, "
            "weight) pairs and no dense vector; send it to /embed_sparse, or to /embed_text with "
            'output_types ["sparse"]',
            param="model",
            code="unsupported_task",
        )
    if is_multi_vector(model) and (modality == "text" or COLBERT_IMAGE in model.capabilities):
        pages = COLBERT_IMAGE in model.capabilities
        raise Unsupported(
            f"the model {model.name!r} is a multi-vector (late-interaction) model: it gives each "
            f"{'text and page image' if pages else 'text'} one vector per "
            f"{'token or patch' if pages else 'token'} and no single vector; send it to /embed_text"
            f'{" or /embed_image" if pages else ""} with output_types ["colbert"] (is_query for queries), or let '
            "it score by MaxSim on /rerank, /v1/rerank, /v2/rerank or /similarity",
            param="model",
            code="unsupported_task",
        )
    if is_reranker(model):
        raise Unsupported(
            f"the model {model.name!r} is a reranker: it scores (query, document) pairs and "
            "embeds nothing; send it to /rerank, /v1/rerank or /v2/rerank",
            param="model",
            code="unsupported_task",
        )
    if is_classifier(model):
        raise Unsupported(
            f"the model {model.name!r} is a sequence classifier: it labels texts ({', '.join(model.labels)}) and "
            "embeds nothing; send it to /predict, /classify or /classify_text",
            param="model",
            code="unsupported_task",
        )
    embeds = [m for m, capability in MODALITY_CAPABILITY.items() if capability in model.capabilities]
    part = "vision tower" if modality == "image" else f"{modality} encoder"
    does = (
        f"it embeds {' and '.join(embeds)} only" if embeds else f"it does {', '.join(sorted(model.capabilities))} only"
    )
    raise Unsupported(f"the model {model.name!r} has no {part}: {does}", param=field, code="unsupported_modality")


def require_multi_vector_images(model, field: str) -> None:
    """A 400 unless the model gives a page image per-patch vectors (visual late-interaction models)."""
    if COLBERT_IMAGE in model.capabilities:
        return
    if EMBED_IMAGE in model.capabilities:
        raise Unsupported(
            f"the model {model.name!r} gives an image one vector, not one per patch; ask it for output_types "
            '["dense"], or name a visual late-interaction model (ColPali, ColQwen2)',
            param="output_types",
            code="unsupported_output",
        )
    require(model, "image", field)


def is_reranker(model) -> bool:
    """It scores pairs and embeds nothing (a late-interaction model scores by embedding: not one)."""
    return (
        RERANK in model.capabilities
        and not scores_late(model)
        and not any(c in model.capabilities for c in MODALITY_CAPABILITY.values())
    )


def scores_late(model) -> bool:
    """It reranks by late interaction: its per-token vectors of a query and of each document, scored by MaxSim."""
    return COLBERT in model.capabilities and RERANK in model.capabilities


def is_multi_vector(model) -> bool:
    """It embeds texts as one vector per token only, and scores by MaxSim."""
    return COLBERT in model.capabilities and EMBED_TEXT not in model.capabilities


def is_sparse_encoder(model) -> bool:
    return SPARSE in model.capabilities and EMBED_TEXT not in model.capabilities


def is_classifier(model) -> bool:
    return CLASSIFY in model.capabilities and RERANK not in model.capabilities


def require_classify(model, field: str = "inputs") -> None:
    if CLASSIFY not in model.capabilities:
        does = ", ".join(sorted(model.capabilities))
        raise Unsupported(
            f"the model {model.name!r} does not classify: it does {does}; name a sequence classifier "
            "(an AutoModelForSequenceClassification directory) in `model`",
            param="model",
            code="unsupported_task",
        )


def require_rerank(model) -> None:
    if RERANK not in model.capabilities:
        does = ", ".join(sorted(model.capabilities))
        what = f"a sequence classifier of {len(model.labels)} labels" if is_classifier(model) else f"it does {does}"
        raise Unsupported(
            f"the model {model.name!r} does not rerank: {what}; name a cross-encoder or LLM reranker in `model`",
            param="model",
            code="unsupported_task",
        )


def check_outputs(model, outputs, param: str = "output_types") -> None:
    missing = [output for output in outputs if output != "dense" and output not in model.capabilities]
    if TOKENS in missing:
        raise Unsupported(
            f"the model {model.name!r} ({model.family}) does not give per-token vectors; "
            "encoder and decoder text embedders do",
            param=param,
            code="unsupported_output",
        )
    if SPARSE in missing:
        raise Unsupported(
            f"the model {model.name!r} gives no sparse vectors: it has no {HEAD_FILES[SPARSE]} head (BGE-M3) and "
            f"is not a sparse encoder (SPLADE); it does {', '.join(sorted(model.capabilities))}",
            param=param,
            code="unsupported_output",
        )
    if missing:
        output = missing[0]
        computes = ["dense", *sorted(c for c in model.capabilities if c in HEAD_FILES)]
        raise Unsupported(
            f"the model {model.name!r} has no {output} head ({HEAD_FILES.get(output, output)} is not in its "
            f"directory); it computes {', '.join(computes)}",
            param=param,
            code="unsupported_output",
        )


def check_dimensions(model, dimensions: int | None) -> None:
    if dimensions is not None and dimensions > model.dimension:
        raise InvalidInput(
            f"dimensions={dimensions} is larger than the model's {model.dimension} dimensions", param="dimensions"
        )


def check_mixed(model, inputs: list, field: str) -> None:
    """Inputs of several modalities each: a model that takes them together, and every medium they hold."""
    if EMBED_INTERLEAVED not in model.capabilities:
        raise Unsupported(
            f"the model {model.name!r} cannot embed several modalities in one input; it does "
            f"{', '.join(sorted(model.capabilities))}",
            param=field,
            code="unsupported_modality",
        )
    for medium in sorted({medium for item in inputs for medium in item.media()}):
        require(model, medium, field)


def check_inputs(model, texts: list, images: list, request) -> str:
    """Texts, images, or (vision-language embedders) both in one input: what the model takes, in one kind of
    pass, with the outputs the request asks. Returns the modality the rows are batched as."""
    field = request.field
    if any(image is not None for image in images):
        if "dense" in request.outputs:
            require(model, "image", field)
        else:
            require_multi_vector_images(model, field)
            check_outputs(model, request.outputs, request.outputs_field)
    if any(text is not None for text in texts):
        check_text(model, request)
    if (
        any(text is not None and image is not None for text, image in zip(texts, images))
        and EMBED_INTERLEAVED not in model.capabilities
    ):
        raise Unsupported(
            f"the model {model.name!r} cannot embed a text and an image together; it does "
            f"{', '.join(sorted(model.capabilities))}",
            param=field,
            code="unsupported_modality",
        )
    if len({model.kind_of("text" if image is None else "image") for image in images}) > 1:
        raise Unsupported(
            f"the model {model.name!r} embeds texts and images in separate passes; send them in separate requests",
            param=field,
            code="unsupported_modality",
        )
    return "text" if all(image is None for image in images) else "image"
