import pytest
import torch

from app.engine.pooling import POOLING_MODES, modes_from_config, pool


def reference_pool(hidden, mask, mode, prompt_length=0):
    from sentence_transformers.sentence_transformer.modules import Pooling

    features = {"token_embeddings": hidden, "attention_mask": mask}
    module = Pooling(hidden.shape[-1], pooling_mode=mode, include_prompt=not prompt_length)
    if prompt_length:
        features["prompt_length"] = prompt_length
    return module(features)["sentence_embedding"]


@pytest.fixture
def batch():
    torch.manual_seed(1)
    hidden = torch.randn(3, 7, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0]])
    return hidden, mask


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_each_mode_matches_sentence_transformers(batch, mode):
    hidden, mask = batch
    assert torch.allclose(pool(hidden, mask, (mode,)), reference_pool(hidden, mask, mode), atol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
def test_prompt_tokens_can_be_excluded(batch, mode):
    hidden, mask = batch
    ours = pool(hidden, mask, (mode,), prompt_length=2)
    assert torch.allclose(ours, reference_pool(hidden, mask, mode, prompt_length=2), atol=1e-6)
    assert not torch.allclose(ours, pool(hidden, mask, (mode,)))


@pytest.mark.parametrize("mode", ["mean", "cls", "lasttoken", "weightedmean", "max"])
def test_left_padding_gives_the_same_vectors_as_right_padding(batch, mode):
    hidden, mask = batch
    lengths = mask.sum(dim=1)
    left_hidden = torch.zeros_like(hidden)
    left_mask = torch.zeros_like(mask)
    for row, length in enumerate(lengths.tolist()):
        left_hidden[row, -length:] = hidden[row, :length]
        left_mask[row, -length:] = 1
    assert torch.allclose(pool(left_hidden, left_mask, (mode,)), pool(hidden, mask, (mode,)), atol=1e-6)


def test_several_modes_concatenate_in_order(batch):
    hidden, mask = batch
    both = pool(hidden, mask, ("cls", "mean"))
    assert both.shape == (3, 16)
    assert torch.allclose(both[:, :8], pool(hidden, mask, ("cls",)))
    assert torch.allclose(both[:, 8:], pool(hidden, mask, ("mean",)))


def test_half_precision_hidden_states_pool_in_float32(batch):
    hidden, mask = batch
    assert pool(hidden.bfloat16(), mask, ("mean",)).dtype == torch.float32


def test_config_forms():
    assert modes_from_config({"pooling_mode_mean_tokens": True}) == ("mean",)
    assert modes_from_config({"pooling_mode_cls_token": True, "pooling_mode_max_tokens": True}) == ("cls", "max")
    assert modes_from_config({"pooling_mode_lasttoken": True}) == ("lasttoken",)
    assert modes_from_config({"pooling_mode": "cls"}) == ("cls",)
    assert modes_from_config({"pooling_mode": ["mean", "max"]}) == ("mean", "max")
    assert modes_from_config({}) == ("mean",)
    with pytest.raises(ValueError):
        modes_from_config({"pooling_mode": "median"})
