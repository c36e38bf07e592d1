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


def test_frames_are_brought_within_the_pixel_budget_as_upstream_resizes_them():
    """Upstream resizes each frame twice (multiples of 56 within 262,144 pixels, then of 28 within 100,352..262,144):
    a 720p clip gives 336x672 frames, 288 tokens per pair of frames after the 2x2 merge (one resize would give
    364x672; a full-size frame ~1,150 tokens)."""
    from kiwi.model.mllm import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, frame_size, patchify_video

    assert frame_size(720, 1280, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS) == (336, 672)
    assert frame_size(480, 832, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS) == (336, 672)
    assert frame_size(1080, 1920, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS) == (336, 672)
    frames = np.zeros((5, 720, 1280, 3), np.uint8)
    _, thw = patchify_video(frames, frame_size(720, 1280, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS))
    assert thw.tolist() == [[3, 24, 48]]  # 5 frames padded to 6 by repeating the last, as Qwen's processor does
    assert int(thw.prod()) // 4 == 3 * 288
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


# Qwen2.5-VL-Instruct's published chat template (tokenizer_config.json / chat_template.json)
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("mode", ["video", "reference", "image"])
def test_the_prompt_is_upstreams_conversation_through_qwens_chat_template(mllm, mode):
    """Upstream's MLLMEncoder.forward builds a system turn and one user turn (source, instruction [+ note],
    reference, queries) and renders it with add_generation_prompt=False; ours must be the same text once each
    vision placeholder is expanded to its token count."""
    from kiwi.model.mllm import REFERENCE_NOTE, SYSTEM_PROMPT

    instruction, n = "Add a red ball", 6
    source = {"type": "image", "image": "src"} if mode == "image" else {"type": "video", "video": "src"}
    content = [source, {"type": "text", "text": instruction + (REFERENCE_NOTE if mode == "reference" else "")}]
    if mode == "reference":
        content.append({"type": "image", "image": "ref"})
    content.append({"type": "text", "text": QUERY_TOKEN * n})
    messages = [{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
                {"role": "user", "content": content}]
    rendered = mllm.tokenizer.apply_chat_template(messages, chat_template=QWEN25_VL_CHAT_TEMPLATE, tokenize=False,
                                                  add_generation_prompt=False)
    pad = "<|image_pad|>" if mode == "image" else "<|video_pad|>"
    expected = rendered.replace(pad, pad * 12, 1).replace("<|image_pad|><|vision_end|>" + QUERY_TOKEN,
                                                          "<|image_pad|>" * 5 + "<|vision_end|>" + QUERY_TOKEN)
    ours = mllm.prompt(instruction, 12, 5 if mode == "reference" else 0, n, source_is_image=mode == "image")
    assert ours == expected
    assert ours.startswith("<|im_start|>system\nYou will be given an image and instruction.")
    assert ours.endswith(QUERY_TOKEN + "<|im_end|>\n")


def test_query_features_are_the_last_n_states_of_each_prompt_as_upstream_reads_them(mllm):
    """Upstream takes hidden_states[:, -n:]: the last n-2 query slots and the <|im_end|> and newline closing the
    turn (the released weights were trained on exactly these states). Rows of different lengths are padded; each
    row's last n real positions are read."""
    instructions = ["Add a red ball", "Remove the cat and the dog from the video"]
    with torch.no_grad():
        out = mllm.encode(instructions, clips(), task="video")
    im_end, newline = mllm.tokenizer.convert_tokens_to_ids("<|im_end|>"), mllm.tokenizer("\n")["input_ids"]
    lengths = out.attention_mask.sum(1).tolist()
    assert lengths[0] < lengths[1]  # padding is exercised
    for row in range(2):
        last = max(i for i, m in enumerate(out.attention_mask[row].tolist()) if m)
        ids = out.input_ids[row].tolist()
        assert ids[last - 1] == im_end and [ids[last]] == newline and ids[last - 5: last - 1] == [mllm.query_id] * 4
        assert torch.equal(out.query_features[row], out.hidden_states[row, last - 5: last + 1])


def test_the_reference_is_read_raw_within_768_tokens_and_its_states_are_the_reference_features(mllm):
    """Upstream gives the MLLM the raw reference image (max 768 tokens of 28x28 after the merge), not the VAE's
    letterboxed canvas: a 720x1280 reference becomes 560x1008 pixels, 20x36 = 720 tokens."""
    from transformers import Qwen2VLImageProcessorPil

    tiny_processor = mllm.image_processor
    mllm.image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                                    min_pixels=3136, max_pixels=12845056)  # the released budget
    try:
        reference = np.zeros((720, 1280, 3), np.uint8)
        reference[200:500, 300:900] = (200, 40, 40)
        with torch.no_grad():
            out = mllm.encode(["Add a red ball"], clips(1), references=[reference], task="reference")
    finally:
        mllm.image_processor = tiny_processor
    assert out.reference_features.shape == (1, 720, 64)
    ids = out.input_ids[0].tolist()
    start = max(i for i, t in enumerate(ids) if t == mllm.vision_start_id)
    assert ids[start + 1: start + 721] == [mllm.image_id] * 720
    assert torch.equal(out.reference_features[0], out.hidden_states[0, start + 1: start + 721])


def test_a_one_frame_source_takes_the_image_path(mllm):
    """Upstream's image mode: the source as an image (image pads, not video pads) and the image queries."""
    image = clips(1)[0][:1]
    with torch.no_grad():
        out = mllm.encode(["Turn the box blue"], [image], task="image")
    assert out.query_features.shape == (1, 4, 64) and out.reference_features is None
    with pytest.raises(ValueError, match="no reference"):
        mllm.encode(["Turn the box blue"], [image], references=[image[0]], task="image")


def test_patchify_video_lays_pixels_out_exactly_as_qwens_own_processor():
    """Parity with transformers' Qwen2-VL processor (its video processor needs torchvision, absent here; the image
    processor tiles an image into the same temporal pair, so two equal frames must give its exact values):
    normalisation, patch order and the 2x2 merge grouping."""
    from transformers import Qwen2VLImageProcessorPil

    from kiwi.model.mllm import patchify_video

    processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=3136,
                                         max_pixels=12845056)
    image = np.random.default_rng(0).integers(0, 255, (56, 84, 3), dtype=np.uint8)
    theirs = processor(images=[image], return_tensors="pt", do_resize=False)
    ours, grid = patchify_video(np.stack([image, image]), (56, 84))
    assert grid.tolist() == theirs["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert torch.equal(ours, theirs["pixel_values"].float())
