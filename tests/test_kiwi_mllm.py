"""The MLLM encoder on a tiny random Qwen2.5-VL with a locally trained tokenizer."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

from kiwi.model.mllm import QUERY_TOKEN, TINY_MIN_PIXELS, KiwiMLLM, QueryCounts, tiny_qwen_config, tiny_tokenizer
from tests.conftest import moving_square

CORPUS = ["Add a red ball to the video", "Remove the cat", "Replace the background with a beach",
          "Make it look like a painting", "Swap the star for a disc"] * 8


@pytest.fixture(scope="module")
def mllm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen")
    tiny_tokenizer(CORPUS).save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)  # the real loading path
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(tiny_qwen_config(tokenizer)).eval()
    processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                         min_pixels=56 * 56, max_pixels=56 * 56)
    return KiwiMLLM(model, tokenizer, processor, QueryCounts(image=4, video=6, reference=8),
                    min_pixels=TINY_MIN_PIXELS).eval()


def clips(n=2):
    return [moving_square(i, frames=8, size=56) for i in range(n)]


def test_the_query_placeholder_is_a_registered_token(mllm):
    ids = mllm.tokenizer(QUERY_TOKEN)["input_ids"]
    assert ids == [mllm.query_id] and mllm.tokenizer.convert_ids_to_tokens(ids) == [QUERY_TOKEN]


def test_injecting_through_inputs_embeds_matches_a_plain_ids_run(mllm):
    """With the query slots holding the placeholder's own embedding, the injected path must equal a run that
    passes only input_ids: same multimodal rotary positions, same states."""
    instructions = ["Add a red ball", "Remove the cat and the dog"]  # different lengths: padding is exercised
    with torch.no_grad():
        placeholder = mllm.model.get_input_embeddings().weight[mllm.query_id]
        saved = mllm.queries["video"].data.clone()
        mllm.queries["video"].data[:] = placeholder
        injected = mllm.encode(instructions, clips(), task="video").hidden_states
        mllm.queries["video"].data[:] = saved
        plain = mllm.encode(instructions, clips(), task="video", use_queries=False).hidden_states
    assert torch.allclose(injected, plain, atol=1e-6)


def test_query_and_reference_feature_shapes(mllm):
    refs = [moving_square(9, frames=1, size=56)[0]] * 2
    with torch.no_grad():
        out = mllm.encode(["Add a red ball", "Add a blue box"], clips(), references=refs, task="reference")
    assert out.query_features.shape == (2, 8, 64)
    assert out.reference_features.shape == (2, 4, 64)  # 56x56 image: 4x4 patches merged 2x2
    with torch.no_grad():
        video = mllm.encode(["Remove the cat"], clips(1), task="video")
    assert video.query_features.shape == (1, 6, 64) and video.reference_features is None


def test_queries_learn_and_the_frozen_vision_tower_does_not(mllm):
    mllm.train()
    mllm.freeze_vision()
    out = mllm.encode(["Add a red ball"], clips(1), task="video")
    out.query_features.pow(2).mean().backward()
    assert mllm.queries["video"].grad is not None and mllm.queries["video"].grad.abs().sum() > 0
    assert all(p.grad is None for p in mllm.model.model.visual.parameters())
    mllm.zero_grad()
    mllm.eval()


def test_a_tokenizer_without_the_query_token_is_refused(mllm):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    bare = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]")
    with pytest.raises(ValueError, match="query token"):
        KiwiMLLM(mllm.model, bare, mllm.image_processor)


def test_the_mllm_sees_sixteen_frames_spread_over_the_clip_not_the_first_sixteen():
    """Upstream samples at most 16 frames evenly from first to last (linspace + round); the released weights were
    trained on that view of an 81-frame clip."""
    from kiwi.model.mllm import frame_indices

    assert frame_indices(81, 16).tolist() == [0, 5, 11, 16, 21, 27, 32, 37, 43, 48, 53, 59, 64, 69, 75, 80]
    assert frame_indices(9, 16).tolist() == list(range(9))


def test_frames_are_brought_within_the_pixel_budget_as_qwen_resizes_them():
    """A 720p clip gives 364x672 frames (under 262,144 pixels, multiples of 28): 312 tokens per pair of frames
    after the 2x2 merge, not the 1,150 of a full-size frame."""
    from kiwi.model.mllm import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, frame_size, patchify_video

    size = frame_size(720, 1280, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS)
    assert size == (364, 672) and size[0] * size[1] <= VIDEO_MAX_PIXELS
    frames = np.zeros((5, 720, 1280, 3), np.uint8)
    _, thw = patchify_video(frames, size)
    assert thw.tolist() == [[3, 26, 48]]  # 5 frames padded to 6 by repeating the last, as Qwen's processor does
    assert int(thw.prod()) // 4 == 3 * 312  # 312 tokens per pair of frames after the 2x2 merge
    assert np.prod(frame_size(56, 56, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS)) >= VIDEO_MIN_PIXELS  # small: scaled up


def test_an_encoded_clip_uses_the_sampled_frames(mllm):
    """Two clips that agree on the sampled frames (and differ elsewhere) encode alike; the first sixteen frames
    alone would tell them apart."""

    long_clip = moving_square(5, frames=33, size=56)
    other = long_clip.copy()
    mllm.max_frames = 4
    try:
        kept = set(np.linspace(0, 32, 4).round().astype(int).tolist())
        other[[i for i in range(33) if i not in kept]] = 0
        with torch.no_grad():
            a = mllm.encode(["Add a red ball"], [long_clip]).query_features
            b = mllm.encode(["Add a red ball"], [other]).query_features
        assert torch.equal(a, b)
    finally:
        mllm.max_frames = 16
