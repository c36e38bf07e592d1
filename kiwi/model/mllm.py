"""The MLLM encoder: Qwen2.5-VL reads the instruction, up to 16 source frames (or the source image) and, for
reference tasks, the reference image; learnable query tokens appended after the prompt come out as the query
features, and the states at the reference image's visual tokens as the reference features.

The prompt is upstream's (showlab/Kiwi-Edit `MLLMEncoder.forward`) token for token: a system turn, then one user
turn of source video (or image), instruction (+ a note when a reference is given), reference image, queries, as
Qwen's chat template renders it without a generation prompt. Two of upstream's habits the released weights were
trained with, and so followed here: the query features are the states of the LAST n positions of the prompt —
which are the last n-2 query slots plus the `<|im_end|>` and newline that close the turn — and each video frame is
resized twice (to multiples of 56 within the frame budget, then of 28), which lands on smaller frames than one
resize would.

Queries enter through `inputs_embeds` written into the slots of a special token (`<|object_ref_start|>`, Qwen's
own, as upstream uses it — not a magic id), while `input_ids` and `mm_token_type_ids` are still passed: Qwen's
multimodal rotary positions are computed from the ids, and the variants that omit them give silently wrong
positions (STACK_NOTES)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# the learnable queries' placeholder: upstream fills Qwen's existing <|object_ref_start|> slots, so the released
# tokenizer and embedding table load unchanged (models saved here before used a token of their own: still read)
QUERY_TOKEN = "<|object_ref_start|>"
LEGACY_QUERY_TOKEN = "<|kiwi_query|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", QUERY_TOKEN]
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


@dataclass(frozen=True)
class QueryCounts:
    image: int = 256
    video: int = 512
    reference: int = 768

    def for_task(self, task: str) -> int:
        return {"image": self.image, "video": self.video, "reference": self.reference}[task]


@dataclass
class EncodedPrompt:
    query_features: torch.Tensor  # (B, N, hidden)
    reference_features: torch.Tensor | None  # (B, R, hidden): states at the reference image's tokens
    hidden_states: torch.Tensor  # (B, S, hidden), last layer (after the final norm in transformers 5)
    input_ids: torch.Tensor | None = None  # (B, S) the prompt's tokens, vision placeholders expanded
    attention_mask: torch.Tensor | None = None  # (B, S) 0 at padding


def tiny_tokenizer(corpus: list[str], vocab_size: int = 400):
    """A byte-level BPE trained on `corpus` with Qwen's special tokens and the query placeholder: the stand-in
    for Qwen's own tokenizer files, which cannot be downloaded here; saved and loaded like any tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))  # a toy vocabulary built in a second: its bars are noise
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIAL_TOKENS[1:])


def tiny_qwen_config(tokenizer, hidden: int = 64, layers: int = 2):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, bos_token_id=ids["<|im_start|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"],
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


# upstream's per-frame pixel budget for the source video (qwen_vl_utils: 128..768 tokens of 28x28, capped at
# 262,144 pixels by the release's max_pixels_per_frame)
VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS = 128 * 28 * 28, 262_144
TINY_MIN_PIXELS = 4 * 28 * 28  # toy models see toy frames as they are, not scaled up to 128 tokens
# the reference image: at most 768 tokens (upstream's max_object_token); a source image: qwen_vl_utils' defaults
REFERENCE_MIN_PIXELS, REFERENCE_MAX_PIXELS = 4 * 28 * 28, 768 * 28 * 28
IMAGE_MIN_PIXELS, IMAGE_MAX_PIXELS = 4 * 28 * 28, 16384 * 28 * 28
SYSTEM_PROMPT = ("You will be given an image and instruction. Please describe the content of the image in detail "
                 "based on instruction in your own words.")
REFERENCE_NOTE = " Use the reference input from last frame."


def frame_indices(n: int, max_frames: int) -> np.ndarray:
    """Which of a clip's `n` frames the MLLM sees: all of them up to `max_frames`, else `max_frames` spread evenly
    from the first to the last (upstream's linspace + round), not the first ones."""
    if n <= max_frames:
        return np.arange(n)
    return np.linspace(0, n - 1, max_frames).round().astype(int)


def image_size(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """Qwen's smart resize: sides rounded to multiples of `factor`, the area brought within the pixel budget."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    return smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def frame_size(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """A video frame's size as upstream's frame list path makes it: each frame first goes through the image
    fetcher with the video factor passed as the *patch* size (so multiples of 2 * factor, at least 4 such tiles),
    then through the video resize (multiples of `factor`, `min_pixels`..`max_pixels`). A 720p clip: 336x672."""
    coarse = 2 * factor
    first = image_size(height, width, min(min_pixels, 4 * coarse * coarse), max_pixels, factor=coarse)
    return image_size(*first, min_pixels, max_pixels, factor=factor)


def patchify_video(frames: np.ndarray, size: tuple[int, int] | None = None, patch: int = 14, merge: int = 2,
                   temporal: int = 2):
    """(T, H, W, 3) uint8 -> Qwen's pixel_values_videos and video_grid_thw, without torchvision. Frames are resized
    to `size` (default: cropped to multiples of patch * merge); T is padded to a multiple of `temporal` by
    repeating the last frame, as Qwen's video processor does."""
    import cv2

    t = -(-len(frames) // temporal) * temporal
    if len(frames) < t:
        frames = np.concatenate([frames, frames[-1:].repeat(t - len(frames), 0)])
    side = patch * merge
    h, w = size or (max(side, frames.shape[1] // side * side), max(side, frames.shape[2] // side * side))
    if (h, w) != frames.shape[1:3]:
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    x = ((frames.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2)
    gt, gh, gw = t // temporal, h // patch, w // patch
    x = x.reshape(gt, temporal, 3, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gt * gh * gw, 3 * temporal * patch * patch)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.tensor([[gt, gh, gw]])


def query_token(tokenizer) -> str | None:
    """The placeholder this tokenizer knows as a single special token: upstream's, else the one models saved here
    before used; None when it knows neither."""
    vocab = tokenizer.get_vocab()
    return next((t for t in (QUERY_TOKEN, LEGACY_QUERY_TOKEN) if t in vocab), None)


class KiwiMLLM(nn.Module):
    def __init__(self, model, tokenizer, image_processor, queries: QueryCounts = QueryCounts(), max_frames: int = 16,
                 min_pixels: int = VIDEO_MIN_PIXELS, max_pixels: int = VIDEO_MAX_PIXELS):
        super().__init__()
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.max_frames, self.min_pixels, self.max_pixels = max_frames, min_pixels, max_pixels
        self.counts = queries
        hidden = model.config.text_config.hidden_size
        self.queries = nn.ParameterDict({task: nn.Parameter(torch.randn(queries.for_task(task), hidden) * 0.02)
                                         for task in ("image", "video", "reference")})
        self.query_token = query_token(tokenizer)
        if self.query_token is None:
            raise ValueError(f"the tokenizer does not know the query token {QUERY_TOKEN}")
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        self.query_id = tokenizer.convert_tokens_to_ids(self.query_token)
        self.image_id, self.video_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
        self.vision_start_id = ids["<|vision_start|>"]
        self.merge = model.config.vision_config.spatial_merge_size

    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    def freeze_vision(self) -> None:
        for p in self.model.model.visual.parameters():
            p.requires_grad_(False)

    def prompt(self, instruction: str, source_tokens: int, reference_tokens: int, queries: int,
               source_is_image: bool = False) -> str:
        """Upstream's conversation as Qwen's chat template renders it (add_generation_prompt=False), with each
        vision placeholder already expanded to its token count."""
        pad = "<|image_pad|>" if source_is_image else "<|video_pad|>"
        source = f"<|vision_start|>{pad * source_tokens}<|vision_end|>"
        ref = ""
        if reference_tokens:
            instruction += REFERENCE_NOTE
            ref = f"<|vision_start|>{'<|image_pad|>' * reference_tokens}<|vision_end|>"
        return (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
                f"<|im_start|>user\n{source}{instruction}{ref}{self.query_token * queries}<|im_end|>\n")

    def images(self, images: list[np.ndarray], min_pixels: int, max_pixels: int) -> dict:
        """Images through Qwen's image processor after upstream's resize (PIL bicubic to the smart-resize size
        within the budget); the processor's own budget then leaves them as they are."""
        from PIL import Image

        resized = []
        for image in images:
            h, w = image_size(*image.shape[:2], min_pixels, max_pixels)
            resized.append(np.asarray(Image.fromarray(np.asarray(image)).resize((w, h), Image.BICUBIC)))
        return self.image_processor(images=resized, return_tensors="pt")

    def encode(self, instructions: list[str], videos: list[np.ndarray], references: list[np.ndarray] | None = None,
               task: str = "video", use_queries: bool = True) -> EncodedPrompt:
        """Encode a batch (same frame size and count within it; references of one token count). `task="image"`
        reads the first frame as an image (upstream's image path). `use_queries=False` passes input_ids alone (the
        placeholder token's own embedding stays in the query slots): the plain run the injection is tested against."""
        device = next(self.model.parameters()).device
        n_queries = self.counts.for_task(task)
        kwargs: dict = {}
        if task == "image":
            source = self.images([v[0] for v in videos], IMAGE_MIN_PIXELS, IMAGE_MAX_PIXELS)
            source_tokens = int(source["image_grid_thw"][0].prod()) // self.merge**2
            pixel_values, image_grid = [source["pixel_values"]], [source["image_grid_thw"]]
        else:
            size = frame_size(*videos[0].shape[1:3], self.min_pixels, self.max_pixels,
                              factor=self.model.config.vision_config.patch_size * self.merge)
            pv, thw = zip(*(patchify_video(v[frame_indices(len(v), self.max_frames)], size) for v in videos),
                          strict=True)
            source_tokens = int(thw[0].prod()) // self.merge**2
            # one second per temporal grid: upstream's processor call passes no fps, so Qwen's default 2 fps holds
            kwargs.update(pixel_values_videos=torch.cat(pv).to(device), video_grid_thw=torch.cat(thw).to(device),
                          second_per_grid_ts=torch.ones(len(videos), device=device))
            pixel_values, image_grid = [], []
        ref_tokens: list[int] = [0] * len(instructions)
        if references is not None:
            if task == "image":
                raise ValueError("an image edit takes no reference image (upstream's image path has none)")
            refs = [self.images([r], REFERENCE_MIN_PIXELS, REFERENCE_MAX_PIXELS) for r in references]
            ref_tokens = [int(r["image_grid_thw"][0].prod()) // self.merge**2 for r in refs]
            if len(set(ref_tokens)) > 1:
                raise ValueError(f"references of different token counts in one batch: {ref_tokens}; give "
                                 "references of one size (or one aspect) per batch")
            pixel_values += [r["pixel_values"] for r in refs]
            image_grid += [r["image_grid_thw"] for r in refs]
        if pixel_values:
            kwargs.update(pixel_values=torch.cat(pixel_values).to(device),
                          image_grid_thw=torch.cat(image_grid).to(device))
        texts = [self.prompt(t, source_tokens, r, n_queries, source_is_image=task == "image")
                 for t, r in zip(instructions, ref_tokens, strict=True)]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True).to(device)
        ids, attention = batch["input_ids"], batch["attention_mask"]
        type_ids = (ids == self.image_id).long() + 2 * (ids == self.video_id).long()
        if use_queries:
            embeds = self.model.get_input_embeddings()(ids)
            queries = self.queries[task].to(embeds.dtype).unsqueeze(0).expand(len(texts), -1, -1)
            kwargs["inputs_embeds"] = embeds.masked_scatter((ids == self.query_id).unsqueeze(-1),
                                                            queries.reshape(-1, embeds.shape[-1]))
        self.model.model.rope_deltas = None  # a cached delta from an earlier call would shift the positions
        hidden = self.model.model(input_ids=ids, attention_mask=attention, mm_token_type_ids=type_ids,
                                  output_hidden_states=True, **kwargs).hidden_states[-1]
        # upstream reads hidden_states[:, -n:]: the last n positions of the prompt, padding aside
        last = (attention * torch.arange(ids.shape[1], device=device)).argmax(1)
        positions = last[:, None] - torch.arange(n_queries - 1, -1, -1, device=device)
        query_features = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
        reference_features = None
        if references is not None:
            # the reference's states: between the prompt's last <|vision_start|> and its <|vision_end|>
            starts = ((ids == self.vision_start_id).long() * torch.arange(ids.shape[1], device=device)).argmax(1)
            spans = starts[:, None] + 1 + torch.arange(ref_tokens[0], device=device)
            reference_features = hidden.gather(1, spans[..., None].expand(-1, -1, hidden.shape[-1]))
        return EncodedPrompt(query_features, reference_features, hidden, ids, attention)
