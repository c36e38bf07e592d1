"""The Kiwi-Edit DiT: diffusers' `WanTransformer3DModel` with the two conditioning paths Kiwi-Edit adds.

- source video latents -> a zero-initialised patch embedder -> ADDED to the noisy video tokens, scaled by the
  noise level (at step 0 the model is exactly the base DiT);
- reference image latents -> their own zero-initialised patch embedder -> APPENDED to the token sequence at the
  RoPE frame index after the video's frames (`prepend`, upstream's `ref_pad_first`: first in the sequence at
  frame index 0, the video's frames moved to 1..f), and dropped before unpatchify.
Only this forward is written here; the blocks, rotary tables, norms and projections are diffusers' own."""

from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from torch import nn


class MaskableSelfAttention(WanAttnProcessor):
    """Wan's attention processor with an optional self-attention mask, set per forward by KiwiTransformer."""

    def __init__(self):
        super().__init__()
        self.mask: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if encoder_hidden_states is None and self.mask is not None:
            attention_mask = self.mask
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


def zero_patch_embedder(transformer: WanTransformer3DModel) -> nn.Conv3d:
    cfg = transformer.config
    inner = cfg.num_attention_heads * cfg.attention_head_dim
    conv = nn.Conv3d(cfg.in_channels, inner, kernel_size=tuple(cfg.patch_size), stride=tuple(cfg.patch_size))
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class KiwiTransformer(nn.Module):
    def __init__(self, transformer: WanTransformer3DModel, reference_position: str = "append"):
        super().__init__()
        if reference_position not in ("append", "prepend"):
            raise ValueError("reference_position must be 'append' or 'prepend'")
        self.transformer = transformer
        self.source_embedder = zero_patch_embedder(transformer)
        self.reference_embedder = zero_patch_embedder(transformer)
        self.reference_position = reference_position
        self.gradient_checkpointing = False  # recompute each block in backward: the 5B DiT's activations at 81 frames
        self.processors = []
        for block in transformer.blocks:
            processor = MaskableSelfAttention()
            block.attn1.set_processor(processor)
            self.processors.append(processor)

    @property
    def config(self):
        return self.transformer.config

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def rotary(self, frames: int, height: int, width: int, frame_index: torch.Tensor, device) -> tuple:
        """cos/sin for a (frames, height, width) token grid with explicit frame indices: 0..T-1 reproduces the
        model's own tables bit for bit; the reference gets one index beyond the video's."""
        rope = self.transformer.rope
        split = [rope.t_dim, rope.h_dim, rope.w_dim]
        out = []
        for table in (rope.freqs_cos, rope.freqs_sin):
            t, h, w = table.split(split, dim=1)
            grid = torch.cat([
                t[frame_index].view(frames, 1, 1, -1).expand(frames, height, width, -1),
                h[:height].view(1, height, 1, -1).expand(frames, height, width, -1),
                w[:width].view(1, 1, width, -1).expand(frames, height, width, -1),
            ], dim=-1)
            out.append(grid.reshape(1, frames * height * width, 1, -1).to(device))
        return tuple(out)

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                source_latents: torch.Tensor | None = None, sigma: torch.Tensor | None = None,
                reference_latents: torch.Tensor | None = None, mask_reference: bool = False,
                context_projected: bool = False) -> torch.Tensor:
        """hidden_states (B, C, T, H, W) noisy latents; timestep (B,); encoder_hidden_states (B, L, text_dim)
        context; source_latents like hidden_states; sigma (B,) the noise level; reference_latents (B, C, 1, H', W').
        mask_reference keeps video tokens from attending to reference tokens (for ablations and tests).
        context_projected: the context already has the DiT's width (Kiwi's connectors) and skips the text
        embedder, which exists for umT5 features."""
        t = self.transformer
        b, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = t.config.patch_size
        ppf, pph, ppw = frames // p_t, height // p_h, width // p_w
        device = hidden_states.device

        tokens = t.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
        if source_latents is not None:
            scale = torch.ones(b, device=device) if sigma is None else sigma.to(device)
            source = self.source_embedder(source_latents.to(tokens.dtype)).flatten(2).transpose(1, 2)
            tokens = tokens + scale.view(b, 1, 1).to(tokens.dtype) * source
        video_len = tokens.shape[1]
        first_video_frame = 0
        if reference_latents is not None and self.reference_position == "prepend":
            first_video_frame = reference_latents.shape[2] // p_t  # the reference takes the first frame indices
        cos, sin = self.rotary(ppf, pph, ppw, torch.arange(ppf, device=device) + first_video_frame, device)

        if reference_latents is not None:
            ref = self.reference_embedder(reference_latents.to(tokens.dtype)).flatten(2).transpose(1, 2)
            rf, rh, rw = (reference_latents.shape[2] // p_t, reference_latents.shape[3] // p_h,
                          reference_latents.shape[4] // p_w)
            ref_frames = torch.arange(rf, device=device) + (ppf if self.reference_position == "append" else 0)
            ref_cos, ref_sin = self.rotary(rf, rh, rw, ref_frames, device)
            if self.reference_position == "append":
                tokens = torch.cat([tokens, ref], dim=1)
                cos, sin = torch.cat([cos, ref_cos], dim=1), torch.cat([sin, ref_sin], dim=1)
            else:
                tokens = torch.cat([ref, tokens], dim=1)
                cos, sin = torch.cat([ref_cos, cos], dim=1), torch.cat([ref_sin, sin], dim=1)
        mask = self._mask(tokens.shape[1], video_len, device) if reference_latents is not None and mask_reference \
            else None
        for processor in self.processors:
            processor.mask = mask

        if context_projected:
            embedder = t.condition_embedder
            steps = embedder.timesteps_proj(timestep).to(next(iter(embedder.time_embedder.parameters())).dtype)
            temb = embedder.time_embedder(steps).type_as(encoder_hidden_states)
            timestep_proj, context = embedder.time_proj(embedder.act_fn(temb)), encoder_hidden_states
        else:
            temb, timestep_proj, context, _ = t.condition_embedder(timestep, encoder_hidden_states, None)
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        try:
            for block in t.blocks:
                if self.gradient_checkpointing and torch.is_grad_enabled():
                    tokens = torch.utils.checkpoint.checkpoint(block, tokens.contiguous(), context, timestep_proj,
                                                               (cos, sin), use_reentrant=False)
                else:
                    tokens = block(tokens.contiguous(), context, timestep_proj, (cos, sin))
        finally:
            for processor in self.processors:
                processor.mask = None

        if reference_latents is not None:  # the reference tokens are context, not output
            tokens = tokens[:, :video_len] if self.reference_position == "append" else tokens[:, -video_len:]
        shift, scale = (t.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        tokens = (t.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
        tokens = t.proj_out(tokens)
        tokens = tokens.reshape(b, ppf, pph, ppw, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return tokens.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def _mask(self, total: int, video_len: int, device) -> torch.Tensor:
        """Boolean (1, 1, S, S): True = may attend. Video queries see only video keys; reference queries see all."""
        allowed = torch.ones(total, total, dtype=torch.bool, device=device)
        if self.reference_position == "append":
            allowed[:video_len, video_len:] = False
        else:
            allowed[total - video_len :, : total - video_len] = False
        return allowed.view(1, 1, total, total)


def count_parameters(module: nn.Module) -> int:
    """Parameters counted once even when tied (Qwen's output layer shares the embedding)."""
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += math.prod(p.shape)
    return total
