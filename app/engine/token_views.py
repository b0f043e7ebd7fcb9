"""A model's tokenizer shown to clients: text-embeddings-inference's `/tokenize` and `/decode`."""

from __future__ import annotations

from .errors import InvalidInput


def tokenize(tokenizer, texts: list[str], add_special_tokens: bool) -> list[list[dict]]:
    """Per text, its tokens: id, the text it covers (its token string for special tokens), whether it is
    special, and its start and stop as byte offsets into the text, as text-embeddings-inference gives them."""
    encoded = tokenizer(
        texts,
        add_special_tokens=add_special_tokens,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    out = []
    for text, ids, offsets, special in zip(
        texts, encoded["input_ids"], encoded["offset_mapping"], encoded["special_tokens_mask"]
    ):
        strings = tokenizer.convert_ids_to_tokens(ids)
        data = text.encode()
        tokens = []
        for token_id, (start, stop), is_special, string in zip(ids, offsets, special, strings):
            if is_special:
                tokens.append({"id": token_id, "text": string, "special": True, "start": None, "stop": None})
                continue
            first, last = len(text[:start].encode()), len(text[:stop].encode())
            tokens.append(
                {
                    "id": token_id,
                    "text": data[first:last].decode(errors="replace"),
                    "special": False,
                    "start": first,
                    "stop": last,
                }
            )
        out.append(tokens)
    return out


def decode(tokenizer, rows: list[list[int]], skip_special_tokens: bool) -> list[str]:
    size = len(tokenizer)
    for index, row in enumerate(rows):
        bad = next((token for token in row if token >= size), None)
        if bad is not None:
            raise InvalidInput(
                f"ids[{index}] has token id {bad}, outside this model's vocabulary of {size}", param=f"ids[{index}]"
            )
    return tokenizer.batch_decode(rows, skip_special_tokens=skip_special_tokens)
