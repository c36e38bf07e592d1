"""The model-backed scaffolder: an image-editing diffusion pipeline (Qwen-Image-Edit, FLUX Kontext,
InstructPix2Pix …) loaded from a local folder, asked to isolate the subject on white or to empty the background.

Any diffusers pipeline that takes `prompt=` and `image=` and returns images works; style edits keep the heuristic
exemplar frame. Runs where the pipeline runs: on GPU actors in the Ray graph (`PipelineConfig.scaffold_gpus`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from lake.taxonomy import EditType
from refvie.stages.scaffold import HeuristicScaffolder

SUBJECT_PROMPT = ("Show only the object this edit puts into the video, alone and centred on a plain white "
                  "background, no shadows: {instruction}")
BACKGROUND_PROMPT = "Remove every object and person, keep only the empty background scene: {instruction}"


@dataclass
class DiffusersScaffolder:
    path: str
    device: str = "cpu"
    steps: int = 28
    guidance_scale: float | None = None  # None: the pipeline's default
    subject_prompt: str = SUBJECT_PROMPT
    background_prompt: str = BACKGROUND_PROMPT
    fallback: HeuristicScaffolder = field(default_factory=HeuristicScaffolder)
    pipe: object = None

    @property
    def name(self) -> str:
        """The model's folder name, recorded as each reference's `reference_source`."""
        from pathlib import Path

        return Path(self.path).name or str(self.path)

    def setup(self) -> None:
        import torch
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.pipe = DiffusionPipeline.from_pretrained(self.path, dtype=dtype).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)

    def reference(self, pair_id, edit_type, instruction, source, target, mask, keyframe):
        if edit_type in (EditType.LOCAL_ADD, EditType.LOCAL_CHANGE):
            prompt = self.subject_prompt.format(instruction=instruction)
        elif edit_type == EditType.BACKGROUND_CHANGE:
            prompt = self.background_prompt.format(instruction=instruction)
        else:
            return self.fallback.reference(pair_id, edit_type, instruction, source, target, mask, keyframe)
        if self.pipe is None:
            self.setup()
        import torch
        from PIL import Image

        seed = int.from_bytes(hashlib.blake2b(pair_id.encode(), digest_size=4).digest(), "big")
        kwargs = dict(prompt=prompt, image=Image.fromarray(target[keyframe]), num_inference_steps=self.steps,
                      generator=torch.Generator(device="cpu").manual_seed(seed), output_type="np")
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        image = np.asarray(self.pipe(**kwargs).images[0])
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8) if image.dtype != np.uint8 else image
        height, width = target.shape[1:3]
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        return image
