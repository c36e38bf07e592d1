"""`kiwi convert`: a released Kiwi-Edit folder in upstream's diffusers layout (fabricated here at tiny size, key
names and folders as released) becomes a model folder whose outputs equal those of the model the tensors came from
(the context bit for bit, the DiT's loss to float rounding)."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from kiwi.model.convert import ConversionError, convert_diffusers_release
from kiwi.model.io import from_pretrained
from kiwi.model.kiwi_edit import EditBatch, tiny
from kiwi.model.mllm import VIDEO_MIN_PIXELS
from tests.conftest import moving_square


def source_model(seed: int = 10):
    model = tiny(seed=seed)
    torch.manual_seed(seed)
    for name, parameter in model.named_parameters():  # nothing left at its zero initialisation
        if name.startswith(("query_connector", "reference_connector", "transformer.source_embedder",
                            "transformer.reference_embedder", "mllm.queries")):
            torch.nn.init.normal_(parameter, std=0.05)
    return model


def fabricate_release(model, folder, ref_pad_first=False):
    """The folder layout and names of showlab's diffusers-format release, from a tiny model's tensors."""
    model.transformer.transformer.save_pretrained(folder / "transformer")
    qwen_tmp = folder / "qwen-tmp"
    model.mllm.model.save_pretrained(qwen_tmp)
    (folder / "mllm_encoder").mkdir()
    (folder / "processor").mkdir()
    for f in qwen_tmp.iterdir():
        if f.name.startswith("model"):
            shutil.move(f, folder / "mllm_encoder" / f.name)
        elif f.name == "config.json":
            shutil.move(f, folder / "processor" / "qwen_config.json")
    shutil.rmtree(qwen_tmp)
    model.mllm.tokenizer.save_pretrained(folder / "processor")
    model.mllm.image_processor.save_pretrained(folder / "processor")
    counts = model.mllm.counts
    (folder / "mllm_encoder" / "config.json").write_text(json.dumps(
        {"_class_name": "MLLMEncoder", "num_image_queries": counts.image, "num_video_queries": counts.video,
         "num_ref_queries": counts.reference, "max_frames": model.mllm.max_frames, "max_pixels_per_frame": 262144}))
    state = model.state_dict()
    own = {"image_queries": state["mllm.queries.image"], "video_queries": state["mllm.queries.video"],
           "ref_queries": state["mllm.queries.reference"]}
    for theirs, ours in (("connector", "query_connector"), ("ref_connector", "reference_connector")):
        own.update({f"{theirs}.{i}.{p}": state[f"{ours}.{i}.{p}"] for i in (0, 2) for p in ("weight", "bias")})
    save_file({k: v.contiguous() for k, v in own.items()},
              folder / "mllm_encoder" / "diffusion_pytorch_model.safetensors")
    for theirs, ours, pad_first in (("source_embedder", "transformer.source_embedder", False),
                                    ("ref_embedder", "transformer.reference_embedder", ref_pad_first)):
        (folder / theirs).mkdir()
        save_file({f"patch_embedding.{p}": state[f"{ours}.{p}"].contiguous() for p in ("weight", "bias")},
                  folder / theirs / "diffusion_pytorch_model.safetensors")
        (folder / theirs / "config.json").write_text(json.dumps({"_class_name": "ConditionalEmbedder",
                                                                 "ref_pad_first": pad_first}))
    (folder / "vae").mkdir()  # upstream keeps the original Wan VAE names behind its own wrapper class
    (folder / "vae" / "config.json").write_text(json.dumps({"_class_name": "VAE", "z_dim": 4}))
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"shift": 5.0}))
    model.vae.save_pretrained(folder.parent / "wan-vae-diffusers")
    return folder, folder.parent / "wan-vae-diffusers"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    model = source_model()
    folder, vae = fabricate_release(model, root / "kiwi-edit-release")
    return model.eval(), folder, vae


def outputs(model):
    frames = np.stack([moving_square(1, frames=5, size=64)])
    batch = EditBatch(["Add a red ball"], frames, frames, np.stack([frames[0, 0]]), "ref_subject")
    with torch.no_grad():
        return model.context(batch), model.training_loss(batch, torch.Generator().manual_seed(0))


def test_a_converted_release_answers_exactly_as_the_model_its_tensors_came_from(release, tmp_path):
    model, folder, vae = release
    result = CliRunner().invoke(__import__("kiwi.cli", fromlist=["cli"]).cli,
                                ["convert", "--from", "diffusers", str(folder), "--out", str(tmp_path / "m"),
                                 "--vae", str(vae)])
    assert result.exit_code == 0, result.output
    assert "mllm_encoder/connector.2.weight" in result.output and "query_connector.2.weight" in result.output
    converted = from_pretrained(tmp_path / "m")
    assert converted.transformer.reference_position == "append"
    assert (converted.mllm.min_pixels, converted.mllm.max_pixels) == (VIDEO_MIN_PIXELS, 262144)  # upstream's budget
    model.mllm.min_pixels = VIDEO_MIN_PIXELS  # the source model run as upstream runs the release
    model.flow = converted.flow  # and trained as upstream trains it (the bell-weighted loss)
    (context_a, loss_a), (context_b, loss_b) = outputs(model), outputs(converted)
    assert context_a.abs().sum() > 0 and torch.equal(context_a, context_b)
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=1e-6)  # the DiT to float rounding (test_kiwi_io)


def test_ref_pad_first_becomes_the_prepended_reference(tmp_path):
    folder, vae = fabricate_release(source_model(11), tmp_path / "release", ref_pad_first=True)
    convert_diffusers_release(folder, tmp_path / "m", vae=vae)
    assert from_pretrained(tmp_path / "m").transformer.reference_position == "prepend"


def test_the_conversion_refuses_what_it_cannot_map_or_fill(release, tmp_path):
    _, folder, vae = release
    with pytest.raises(ConversionError, match="original Wan VAE.*--vae"):
        convert_diffusers_release(folder, tmp_path / "a")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    own_file = broken / "mllm_encoder" / "diffusion_pytorch_model.safetensors"
    own = load_file(own_file)
    save_file({**own, "extra_head.weight": torch.zeros(2)}, own_file)
    with pytest.raises(ConversionError, match=r"unmapped tensors \['extra_head.weight'\]"):
        convert_diffusers_release(broken, tmp_path / "b", vae=vae)
    save_file({k: v for k, v in own.items() if k != "ref_connector.2.bias"}, own_file)
    with pytest.raises(ConversionError, match=r"no tensor for \['reference_connector.2.bias'\]"):
        convert_diffusers_release(broken, tmp_path / "c", vae=vae)
    save_file({**own, "video_queries": torch.zeros(3, 7)}, own_file)
    with pytest.raises(ConversionError, match=r"mllm.queries.video: \(3, 7\) != "):
        convert_diffusers_release(broken, tmp_path / "d", vae=vae)
    assert not any((tmp_path / name).exists() for name in "bcd")  # nothing half-written


def fabricate_diffsynth(tmp_path, dit_lora: bool = False):
    """A raw stage checkpoint in DiffSynth's names from a tiny model with LoRA (rank 4, alpha = rank, as
    upstream), plus the base folders it started from: a Wan folder whose DiT differs from the trained one, and the
    plain Qwen2.5-VL without adapters."""
    from kiwi.model.convert_diffsynth import WAN_BLOCK_KEYS, WAN_TOP_KEYS
    from kiwi.model.lora import add_lora, base_state_dict, lora_parameters

    model = source_model(12)
    add_lora(model.mllm.model.model.language_model, rank=4)
    torch.manual_seed(5)
    for parameter in lora_parameters(model.mllm.model):
        torch.nn.init.normal_(parameter, std=0.05)
    top = {v: k for k, v in WAN_TOP_KEYS.items()}
    block = {v: k for k, v in WAN_BLOCK_KEYS.items()}
    raw = {}
    for key, value in model.transformer.transformer.state_dict().items():
        index, _, rest = key.removeprefix("blocks.").partition(".")
        raw["pipe.dit." + (top[key] if key in top else f"blocks.{index}.{block[rest]}")] = value
    state = model.state_dict()
    raw.update({f"pipe.mllm.{t}_queries.q": state[f"mllm.queries.{o}"] for t, o in
                (("image", "image"), ("video", "video"), ("ref", "reference"))})
    for theirs, ours in (("connetor", "query_connector"), ("ref_connector", "reference_connector")):
        raw.update({f"pipe.mllm.{theirs}.{i}.{p}": state[f"{ours}.{i}.{p}"] for i in (0, 2)
                    for p in ("weight", "bias")})
    for theirs, ours in (("vae_condition", "source_embedder"), ("ref_vae_condition", "reference_embedder")):
        raw.update({f"pipe.{theirs}.patch_embedding.{p}": state[f"transformer.{ours}.{p}"]
                    for p in ("weight", "bias")})
    for key, value in model.mllm.model.state_dict().items():
        if "lora_" in key:
            raw["pipe.mllm.model." + key] = value
    wan = tmp_path / "wan"
    base_dit = tiny(seed=99).transformer.transformer  # the pre-stage DiT: every tensor differs
    if dit_lora:  # a LoRA-only DiT stage: base + B @ A on one projection
        base_dit.load_state_dict(model.transformer.transformer.state_dict())
        a, b = torch.randn(1, 32) * 0.1, torch.randn(32, 1) * 0.1
        with torch.no_grad():
            base_dit.blocks[0].attn1.to_q.weight -= b @ a
        raw = {k: v for k, v in raw.items() if not k.startswith("pipe.dit.")}
        raw.update({"pipe.dit.blocks.0.self_attn.q.lora_A.default.weight": a,
                    "pipe.dit.blocks.0.self_attn.q.lora_B.default.weight": b})
    base_dit.save_pretrained(wan / "transformer")
    model.vae.save_pretrained(wan / "vae")
    qwen = tmp_path / "qwen"
    model.mllm.model.save_pretrained(qwen, state_dict=base_state_dict(model.mllm.model))
    model.mllm.tokenizer.save_pretrained(qwen)
    model.mllm.image_processor.save_pretrained(qwen)
    save_file({k: v.contiguous() for k, v in raw.items()}, tmp_path / "step-1000.safetensors")
    return model.eval(), tmp_path / "step-1000.safetensors", wan, qwen


@pytest.mark.parametrize("dit_lora", [False, True])
def test_a_converted_diffsynth_checkpoint_answers_as_the_model_it_was_saved_from(tmp_path, dit_lora):
    from kiwi.cli import cli

    model, checkpoint, wan, qwen = fabricate_diffsynth(tmp_path, dit_lora)
    result = CliRunner().invoke(cli, ["convert", "--from", "diffsynth", str(checkpoint), "--wan", str(wan),
                                      "--qwen", str(qwen), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "mllm.connetor.2.weight" in result.output
    assert "merged into model.layers.0.self_attn.q_proj.weight" in result.output
    converted = from_pretrained(tmp_path / "m")
    assert converted.sampler_steps == 50 and converted.transformer.reference_position == "append"
    model.mllm.min_pixels = VIDEO_MIN_PIXELS
    model.flow = converted.flow
    (context_a, loss_a), (context_b, loss_b) = outputs(model), outputs(converted)
    assert context_a.abs().sum() > 0
    torch.testing.assert_close(context_a, context_b, rtol=0, atol=1e-5)  # LoRA merged: float rounding
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=1e-5)


def test_the_diffsynth_conversion_refuses_unknown_and_half_tensors(tmp_path):
    from kiwi.model.convert_diffsynth import convert_diffsynth_checkpoint

    _, checkpoint, wan, qwen = fabricate_diffsynth(tmp_path)
    raw = load_file(checkpoint)
    save_file({**raw, "pipe.mllm.extra_head.weight": torch.zeros(2)}, tmp_path / "a.safetensors")
    with pytest.raises(ConversionError, match="unmapped tensor 'mllm.extra_head.weight'"):
        convert_diffsynth_checkpoint(tmp_path / "a.safetensors", tmp_path / "out-a", wan, qwen)
    lora_b = next(k for k in raw if ".lora_B." in k)
    save_file({k: v for k, v in raw.items() if k != lora_b}, tmp_path / "b.safetensors")
    with pytest.raises(ConversionError, match="lacks its lora_B"):
        convert_diffsynth_checkpoint(tmp_path / "b.safetensors", tmp_path / "out-b", wan, qwen)
    save_file({k: v for k, v in raw.items() if "ref_connector.2.bias" not in k}, tmp_path / "c.safetensors")
    with pytest.raises(ConversionError, match=r"no tensor for \['reference_connector.2.bias'\]"):
        convert_diffsynth_checkpoint(tmp_path / "c.safetensors", tmp_path / "out-c", wan, qwen)
    assert not any((tmp_path / f"out-{n}").exists() for n in "abc")


STAGE_1_LACKS = ("ref_queries", "ref_connector", "vae_condition")  # upstream's stage 1 trains no reference parts


def stage_1_checkpoint(tmp_path):
    model, checkpoint, wan, qwen = fabricate_diffsynth(tmp_path)
    raw = {k: v for k, v in load_file(checkpoint).items() if not any(part in k for part in STAGE_1_LACKS)}
    save_file(raw, tmp_path / "stage1.safetensors")
    return model, tmp_path / "stage1.safetensors", checkpoint, wan, qwen


def test_a_stage_1_checkpoint_is_refused_without_a_base_naming_what_it_lacks(tmp_path):
    from kiwi.model.convert_diffsynth import convert_diffsynth_checkpoint

    _, stage1, _, wan, qwen = stage_1_checkpoint(tmp_path)
    with pytest.raises(ConversionError) as info:
        convert_diffsynth_checkpoint(stage1, tmp_path / "m", wan, qwen)
    message = str(info.value)
    for name in ("mllm.queries.reference", "reference_connector.0.weight", "transformer.reference_embedder.bias",
                 "transformer.source_embedder.weight", "--base"):
        assert name in message
    assert not (tmp_path / "m").exists()


def test_a_stage_1_checkpoint_converts_over_a_fresh_start_or_an_earlier_stage(tmp_path):
    from kiwi.cli import cli

    model, stage1, full, wan, qwen = stage_1_checkpoint(tmp_path)
    result = CliRunner().invoke(cli, ["convert", "--from", "diffsynth", str(stage1), "--wan", str(wan), "--qwen",
                                      str(qwen), "--base", "fresh", "--out", str(tmp_path / "fresh")])
    assert result.exit_code == 0, result.output
    report = result.output[result.output.index("where each component came from:"):]
    assert re.search(r"image queries\s+checkpoint", report) and re.search(r"query connector\s+checkpoint", report)
    assert re.search(r"reference connector\s+fresh initialisation", report)
    assert re.search(r"source embedder\s+fresh initialisation", report)
    fresh = from_pretrained(tmp_path / "fresh")
    assert fresh.mllm.queries["reference"].shape[0] == 768  # the published count, as kiwi init makes it
    assert fresh.reference_connector[2].weight.abs().sum() == 0  # a fresh connector hands the DiT zeros
    assert fresh.transformer.source_embedder.weight.abs().sum() == 0
    torch.testing.assert_close(fresh.query_connector[0].weight, model.query_connector[0].weight, rtol=0, atol=0)

    earlier = tmp_path / "earlier"  # a converted earlier stage that has every part
    assert CliRunner().invoke(cli, ["convert", "--from", "diffsynth", str(full), "--wan", str(wan), "--qwen",
                                    str(qwen), "--out", str(earlier)]).exit_code == 0
    result = CliRunner().invoke(cli, ["convert", "--from", "diffsynth", str(stage1), "--base", str(earlier),
                                      "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert re.search(rf"reference embedder\s+base \({re.escape(str(earlier))}\)", result.output)
    converted, base = from_pretrained(tmp_path / "m"), from_pretrained(earlier)
    for name, tensor in base.state_dict().items():
        if name.startswith(("reference_connector", "transformer.reference_embedder", "transformer.source_embedder")):
            torch.testing.assert_close(converted.state_dict()[name], tensor, rtol=0, atol=0)
    torch.testing.assert_close(converted.transformer.transformer.proj_out.weight,
                               model.transformer.transformer.proj_out.weight, rtol=0, atol=0)  # the stage's DiT
    both = CliRunner().invoke(cli, ["convert", "--from", "diffsynth", str(stage1), "--base", str(earlier), "--wan",
                                    str(wan), "--qwen", str(qwen), "--out", str(tmp_path / "x")])
    assert both.exit_code != 0 and "leave out --wan / --qwen" in both.output
