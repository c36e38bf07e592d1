"""GPU smoke test (run on a machine with a CUDA GPU): a mid-size random Kiwi-Edit DiT in bf16, 20 training steps
of the conditioned DiT on random latents; prints step time, peak memory and model FLOPs utilisation (MFU).

    python bench/gpu_smoke.py [--layers 16] [--heads 16] [--frames 21] [--size 60] [--peak-tflops 989]

With `--lake URI --slice NAME [--device cuda]` it instead trains the tiny Kiwi-Edit from the lake loader and
reports whether the device waits on data.

The FLOPs are counted as 6 x parameters x tokens (forward + backward) plus attention's 12 x layers x tokens^2 x
width; the peak defaults to an H100's dense bf16 figure. Not run in CI (no GPU there)."""

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
    else:
        main()
