"""Request and response models of the routes GME's earlier FastAPI server had, in its shapes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..http.fields import CacheOption, RequestBody, Texts, image_list, text_list


class GMEOptions(RequestBody):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(default=None, description="Defaults to the first model that takes the input.")
    instruction: str | None = Field(
        default=None, description="The instruction for queries; documents (is_query=false) always get the default."
    )
    is_query: bool = True
    cache: CacheOption = True


class GMETextRequest(GMEOptions):
    texts: Texts

    @field_validator("texts", mode="before")
    @classmethod
    def _check_texts(cls, value):
        return text_list(value, "texts")


class GMEImageRequest(GMEOptions):
    images: Texts = Field(
        description="Base64, `data:image/...;base64,` URIs, or http(s) URLs when IMAGE_URL_FETCH is on."
    )

    @field_validator("images", mode="before")
    @classmethod
    def _check_images(cls, value):
        return image_list(value, "images")


class GMEFusedRequest(GMEImageRequest):
    texts: Texts = Field(description="One text per image: texts[i] and images[i] make one input.")

    @field_validator("texts", mode="before")
    @classmethod
    def _check_texts(cls, value):
        return text_list(value, "texts")


class GMEEmbeddingsResponse(BaseModel):
    embeddings: list[list[float]]
    dimension: int
