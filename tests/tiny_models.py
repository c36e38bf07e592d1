"""Tiny random-weight models saved to local folders, so the real `from_pretrained(path)` code runs in tests."""

from __future__ import annotations

import json
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table, which CLIP's byte-level BPE vocabulary is written in."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, extra = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def tiny_instruct_pix2pix(folder: Path) -> Path:
    """A randomly initialised InstructPix2Pix pipeline (UNet, VAE, CLIP text encoder, a byte-level tokenizer with
    no merges) written with save_pretrained: an image-editing pipeline in diffusers' layout, in ~100 KB."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab = _tiny_clip_tokenizer(folder)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=8,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=4, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=4)
    text = CLIPTextModel(CLIPTextConfig(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                                        pad_token_id=vocab["<|endoftext|>"], hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=2, vocab_size=len(vocab),
                                        max_position_embeddings=32))
    pipe = StableDiffusionInstructPix2PixPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                                  scheduler=EulerAncestralDiscreteScheduler(), safety_checker=None,
                                                  feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def _tiny_clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": i + len(chars) for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=32), vocab


def tiny_clipseg(folder: Path) -> Path:
    """A randomly initialised CLIPSeg (text-prompted segmentation) with its processor, saved by save_pretrained."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, vocab = _tiny_clip_tokenizer(folder)
    special = dict(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                   pad_token_id=vocab["<|endoftext|>"])
    config = CLIPSegConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=32, **special),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=64, patch_size=16),
        projection_dim=16, extract_layers=[0, 1], reduce_dim=16, decoder_num_attention_heads=2,
        decoder_intermediate_size=32)
    torch.manual_seed(0)
    processor = CLIPSegProcessor(image_processor=ViTImageProcessor(size={"height": 64, "width": 64}),
                                 tokenizer=tokenizer)
    CLIPSegForImageSegmentation(config).save_pretrained(folder / "clipseg")
    processor.save_pretrained(folder / "clipseg")
    return folder / "clipseg"


def tiny_clip(folder: Path, projection_dim: int = 48, with_tokenizer: bool = False) -> Path:
    """A randomly initialised CLIP (image and text towers) with a PIL image processor, saved by save_pretrained;
    `with_tokenizer` adds a byte-level tokenizer and saves a full CLIPProcessor (what text scorers load)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = dict(vocab_size=100)
    if with_tokenizer:
        (folder / "tok").mkdir(exist_ok=True)
        tokenizer, vocab = _tiny_clip_tokenizer(folder / "tok")
        text = dict(vocab_size=len(vocab), eos_token_id=vocab["<|endoftext|>"], bos_token_id=vocab["<|startoftext|>"],
                    pad_token_id=vocab["<|endoftext|>"])
    config = CLIPConfig(
        text_config=dict(**text, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=32),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=8),
        projection_dim=projection_dim)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder / "clip")
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    if with_tokenizer:
        CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder / "clip")
    else:
        images.save_pretrained(folder / "clip")
    return folder / "clip"
