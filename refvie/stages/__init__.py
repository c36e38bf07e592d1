"""RefVIE stages: each a class with `setup()` (load once per worker) and `__call__(batch)` over numpy batches,
usable inside Ray Data `map_batches` and in a plain loop."""

from refvie.stages.classify import Classify, RuleClassifier
from refvie.stages.decode import Decode
from refvie.stages.embed import Embed
from refvie.stages.localise import DiffLocaliser, Localise, LocaliseConfig
from refvie.stages.package import Package
from refvie.stages.scaffold import HeuristicScaffolder, Scaffold, ScaffoldConfig
from refvie.stages.score import FilterConfig, Score
from refvie.stages.write import Write

__all__ = ["Classify", "Decode", "DiffLocaliser", "Embed", "FilterConfig", "HeuristicScaffolder", "Localise",
           "LocaliseConfig", "Package", "RuleClassifier", "Scaffold", "ScaffoldConfig", "Score", "Write"]
