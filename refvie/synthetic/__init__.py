"""The synthetic edit world: procedural ground-truth video-edit pairs (the embedded default data source)."""

from refvie.synthetic.world import DEFAULT_MIX, SyntheticConfig, SyntheticSample, SyntheticWorld

__all__ = ["DEFAULT_MIX", "SyntheticConfig", "SyntheticSample", "SyntheticWorld"]
