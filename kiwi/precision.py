"""The precision policy of a run: bf16 autocast on a GPU (and wherever fp32 master weights are kept), and the
trained parameters held in fp32 before anything is loaded into them when the run asks for master weights."""

from __future__ import annotations

import contextlib
import warnings

import torch

from kiwi.trainable import trainable_groups


class PrecisionPolicy:
    """`Trainer._autocast` and `Trainer._master_weights` (uses the trainer's device, model and run)."""

    @contextlib.contextmanager
    def _autocast(self):
        """bf16 autocast on a GPU, and wherever the run keeps fp32 master weights (the forward in bf16, the update
        in fp32); otherwise the parameters' own dtype."""
        enabled = self.device.type == "cuda" or self.run.master_weights == "fp32"
        with warnings.catch_warnings():
            # fp32 norm weights on bf16 activations: torch remarks that RMSNorm's fused kernel wants one dtype (a
            # note on the unfused path it takes, nothing the user can act on)
            warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight", category=UserWarning)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled):
                yield

    def _master_weights(self) -> None:
        """With master_weights="fp32", every parameter that any stage trains is kept in fp32 before anything is
        loaded into it (a resumed run then holds the same fp32 values as an uninterrupted one)."""
        if self.run.master_weights != "fp32":
            return
        groups = trainable_groups(self.model)
        for name in {n for stage in self.run.stages for n in stage.trains}:
            for param in groups[name]:
                param.data = param.data.float()
