"""GPU smoke test (run on a machine with a CUDA GPU): a mid-size random Kiwi-Edit DiT in bf16, 20 training steps
of the conditioned DiT on random latents; prints step time, peak memory and model FLOPs utilisation (MFU).

    python bench/gpu_smoke.py [--layers 16] [--heads 16] [--frames 21] [--size 60] [--peak-tflops 989]

With `--lake URI --slice NAME [--device cuda]` it instead trains the tiny Kiwi-Edit from the lake loader and
reports whether the device waits on data.

The FLOPs are counted as 6 x parameters x tokens (forward + backward) plus attention's 12 x layers x tokens^2 x
width; the peak defaults to an H100's dense bf16 figure. Not run in CI (no GPU there).

    python bench/gpu_smoke.py --full-shapes [--sampler-steps 2] [--peak-tflops 989]

builds the released architecture at full size from the published configs (Qwen2.5-VL-3B with LoRA rank 64, the
Wan2.2-TI2V-5B DiT and VAE, random weights, bf16), runs one reference edit of 81 frames at 480x832 and one
training step with gradient checkpointing on the DiT and the MLLM, and prints seconds, peak memory and MFU.
`--tiny --device cpu` runs the same path at toy size (what CI checks)."""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--frames", type=int, default=21, help="latent frames")
    parser.add_argument("--size", type=int, default=60, help="latent height and width")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_smoke needs a CUDA GPU")
    from diffusers import WanTransformer3DModel

    from kiwi.model.dit import KiwiTransformer, count_parameters
    from kiwi.model.flow import FlowMatching

    width = args.heads * args.head_dim
    base = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=args.heads, attention_head_dim=args.head_dim,
                                 in_channels=48, out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=4 * width,
                                 num_layers=args.layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                 rope_max_seq_len=1024)
    model = KiwiTransformer(base).to("cuda", torch.bfloat16).train()
    flow = FlowMatching()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-5)
    shape = (args.batch, 48, args.frames, args.size, args.size)
    tokens = args.frames * (args.size // 2) ** 2 + (args.size // 2) ** 2  # video + one reference frame
    params = count_parameters(model)
    times = []
    torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps):
        x0 = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
        noise, source = torch.randn_like(x0), torch.randn_like(x0)
        reference = torch.randn(args.batch, 48, 1, args.size, args.size, device="cuda", dtype=torch.bfloat16)
        context = torch.randn(args.batch, 768, width, device="cuda", dtype=torch.bfloat16)
        sigma = flow.sample_sigma(args.batch, device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            prediction = model(flow.noisy(x0, noise, sigma), flow.timestep(sigma), context, source_latents=source,
                               sigma=sigma, reference_latents=reference, context_projected=True)
            loss = flow.loss(prediction, x0, noise)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        print(f"step {step:2d} loss {loss.item():.4f} {times[-1] * 1e3:.0f} ms")
    step_s = sorted(times[3:])[len(times[3:]) // 2]
    flops = args.batch * (6 * params * tokens + 12 * args.layers * tokens**2 * width)
    print(f"params {params / 1e9:.2f} B, tokens {tokens}, median step {step_s * 1e3:.0f} ms, "
          f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, "
          f"MFU {flops / step_s / (args.peak_tflops * 1e12):.1%} of {args.peak_tflops:g} TFLOPS")




def full_shapes(tiny: bool = False, device: str = "cuda", sampler_steps: int = 2, peak_tflops: float = 989.0,
                frames: int = 81, height: int = 480, width: int = 832) -> dict:
    """The released architecture (or its toy twin with `tiny`): one reference edit and one training step."""
    import numpy as np

    from kiwi.data import reference_on_white
    from kiwi.inference import edit
    from kiwi.model.dit import count_parameters
    from kiwi.model.kiwi_edit import EditBatch
    from kiwi.model.kiwi_edit import tiny as tiny_model
    from kiwi.model.lora import add_lora
    from kiwi.plan import published_model

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if tiny:
        model = tiny_model()
        add_lora(model.mllm.model.model.language_model, rank=4)
        frames, height, width = 9, 64, 64
    else:
        model = published_model(device, dtype)
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8)
    reference = rng.integers(0, 255, (height, height, 3), dtype=np.uint8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = edit(model, video, "Replace the background with a beach", reference, task="ref_background",
               steps=sampler_steps)
    sync()
    edit_s = time.perf_counter() - start
    edit_memory = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0

    model.train()
    model.transformer.gradient_checkpointing = True
    model.mllm.model.config.text_config.use_cache = False  # no KV cache to keep in a training forward
    model.mllm.model.activation_checkpointing_enable({"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-5)
    batch = EditBatch(["Replace the background with a beach"], video[None], video[None],
                      reference_on_white(reference, (height, width))[None], "ref_background",
                      mllm_reference=[reference])
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    loss = model.training_loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    sync()
    loss = loss.item()
    step_s = time.perf_counter() - start
    train_memory = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
    latent_tokens = ((frames - 1) // 4 + 1) * (height // 32) * (width // 32) if not tiny else 0
    dit_params = count_parameters(model.transformer)
    flops = 6 * dit_params * latent_tokens  # the DiT's share: forward + backward over the video's tokens
    result = {"edit_s": edit_s, "sampler_steps": sampler_steps, "edit_peak_gib": edit_memory, "step_s": step_s,
              "train_peak_gib": train_memory, "loss": loss, "frames": len(out),
              "trainable_params": sum(p.numel() for p in trainable), "dit_params": dit_params,
              "dit_mfu": flops / step_s / (peak_tflops * 1e12)}
    print(f"edit: {len(out)} frames of {width}x{height}, {sampler_steps} sampler steps in {edit_s:.1f} s, peak "
          f"{edit_memory:.1f} GiB; training step (checkpointing on): {step_s:.2f} s, peak {train_memory:.1f} GiB, "
          f"loss {loss:.4f}, DiT MFU {result['dit_mfu']:.1%} of {peak_tflops:g} TFLOPS "
          f"({result['trainable_params'] / 1e9:.2f} B trainable)")
    return result


def feed_from_lake() -> None:
    """`python bench/gpu_smoke.py --lake URI --slice NAME [--device cuda]`: the tiny Kiwi-Edit trained from the
    lake loader for 20 steps; reports how much of each step the device waited for data."""
    import sys

    import lake
    from kiwi.data import DataConfig, SliceLoader
    from kiwi.model.kiwi_edit import tiny
    from lake.slices import load_slice

    args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
    device = args.get("--device", "cuda")
    db = lake.open(args["--lake"])
    model = tiny().to(device).train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    data = DataConfig(pin_memory=device.startswith("cuda"))
    loader = iter(SliceLoader(db, load_slice(db, args["--slice"]), data, batch_size=8, seed=0, task="instruct"))
    waits, computes = [], []
    for _ in range(20):
        start = time.perf_counter()
        batch = next(loader).batch
        waits.append(time.perf_counter() - start)
        start = time.perf_counter()
        loss = model.training_loss(batch)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        computes.append(time.perf_counter() - start)
    wait, compute = sum(waits[3:]), sum(computes[3:])
    print(f"{device}: waited for data {wait / (wait + compute):.0%} of the time "
          f"(data {wait / len(waits[3:]) * 1e3:.0f} ms, compute {compute / len(computes[3:]) * 1e3:.0f} ms per step)")


if __name__ == "__main__":
    import sys

    if "--lake" in sys.argv:
        feed_from_lake()
    elif "--full-shapes" in sys.argv:
        full = argparse.ArgumentParser()
        full.add_argument("--full-shapes", action="store_true")
        full.add_argument("--tiny", action="store_true", help="the same path at toy size (CPU)")
        full.add_argument("--device", default="cuda")
        full.add_argument("--sampler-steps", type=int, default=2)
        full.add_argument("--peak-tflops", type=float, default=989.0)
        a = full.parse_args()
        if a.device.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit("--full-shapes needs a CUDA GPU (or --tiny --device cpu)")
        full_shapes(a.tiny, a.device, a.sampler_steps, a.peak_tflops)
    else:
        main()
