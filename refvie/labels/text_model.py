"""The default offline edit classifier: a small MLP head on the MiniLM sentence embeddings the project already ships.

Trained on the instruction grammar (`refvie.labels.grammar`) plus the synthetic world's instructions, in seconds on
CPU and deterministically, so the head is rebuilt at first use (and cached under `~/.cache/kiwi-lake`) instead of
being committed as a binary. Its probabilities are calibrated by one temperature fitted on the hand-written
development set shipped beside this file (real-style phrasings the grammar did not produce); an instruction whose
calibrated confidence is under `review_threshold` is flagged `needs_review` rather than forced silently into a
category. The rules' answer is one more input feature: they are exact on the templates they were written for, and
the head learns how far to trust them."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lake.taxonomy import EDIT_TYPES, EditType
from refvie.labels import clauses, grammar
from refvie.labels.base import Label, read_labelled
from refvie.labels.rules import RuleClassifier

HEAD_VERSION = "2"  # 2: features of the edit clause (refvie.labels.clauses), not the whole text
DEV_SET = Path(__file__).with_name("dev.tsv")
CLASSES = tuple(EditType(e) for e in EDIT_TYPES)


@dataclass(frozen=True)
class TextModelConfig:
    per_category: int = 800  # grammar instructions per category
    synthetic: int = 600  # synthetic-world instructions (its own seed, never the one the tests score)
    seed: int = 0
    rules_weight: float = 1.0  # scale of the rules' one-hot feature next to the unit-norm embedding
    hidden: int = 256
    dropout: float = 0.3
    weight_decay: float = 1e-2
    learning_rate: float = 3e-3
    epochs: int = 60
    batch_size: int = 256
    review_threshold: float = 0.6  # calibrated confidence under this: needs_review (chosen on the dev set)

    def key(self) -> str:
        parts = [HEAD_VERSION, grammar.GRAMMAR_VERSION, repr(self), _file_hash(DEV_SET), _file_hash(grammar.__file__),
                 _file_hash(clauses.__file__)]
        return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).hexdigest()


def _file_hash(path) -> str:
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=8).hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("KIWI_LAKE_CACHE", Path.home() / ".cache" / "kiwi-lake")) / "labels"


def training_corpus(config: TextModelConfig) -> list[tuple[str, EditType]]:
    rows = grammar.corpus(config.per_category, config.seed)
    if config.synthetic:
        from refvie.synthetic import SyntheticConfig, SyntheticWorld

        world = SyntheticWorld(SyntheticConfig(frames=1, height=32, width=32, seed=9_000 + config.seed,
                                               mix={e: 1.0 for e in EDIT_TYPES if e != "other"}))
        rows += [(s.instruction, s.edit_type) for s in world.samples(config.synthetic)]
    return rows


@dataclass
class TextClassifier:
    """`TextClassifier.load()` gives the cached head (training it first if needed); `predict(texts)` labels."""

    config: TextModelConfig = field(default_factory=TextModelConfig)
    params: dict[str, np.ndarray] | None = None  # w1 (features, hidden), b1, w2 (hidden, classes), b2
    temperature: float = 1.0
    embedder: object = None
    name: str = "text-model"
    train_seconds: float = 0.0

    # ------------------------------------------------------------------------------------------- features
    def _embedder(self):
        if self.embedder is None:
            from lake.embed import TextEmbedder

            self.embedder = TextEmbedder.shared()
        return self.embedder

    def features(self, texts: list[str]) -> np.ndarray:
        """The edit clause's sentence embedding and the rules' answer on it: a long instruction's scene
        description and keep-clause are not what it asks for."""
        texts = [clauses.edit_clause(t) for t in texts]
        embedding = self._embedder()(list(texts))
        rules = RuleClassifier().classify(list(texts))
        onehot = np.zeros((len(texts), len(CLASSES)), np.float32)
        onehot[np.arange(len(texts)), [CLASSES.index(r) for r in rules]] = self.config.rules_weight
        return np.concatenate([embedding, onehot], axis=1)

    # ------------------------------------------------------------------------------------------- training
    @classmethod
    def train(cls, config: TextModelConfig | None = None, progress=None) -> TextClassifier:
        """Fit the head on the generated corpus and calibrate it on the development set. Deterministic."""
        import torch

        config = config or TextModelConfig()
        model = cls(config)
        start = time.perf_counter()
        corpus = training_corpus(config)
        if progress:
            progress(f"embedding {len(corpus)} training instructions")
        x = torch.from_numpy(model.features([t for t, _ in corpus]))
        y = torch.tensor([CLASSES.index(label) for _, label in corpus])
        if progress:
            progress(f"fitting the head ({config.epochs} epochs)")
        model.params = _fit_mlp(x, y, config)
        model.temperature = float(np.float32(model._calibrate()))  # as the cache stores it: first use = later uses
        model.train_seconds = time.perf_counter() - start
        return model

    def _calibrate(self) -> float:
        """The temperature that minimises the negative log-likelihood on the development set."""
        texts, labels = read_labelled(DEV_SET)
        logits = self.logits(texts)
        truth = np.array([CLASSES.index(label) for label in labels])
        best, best_nll = 1.0, np.inf
        for t in np.exp(np.linspace(np.log(0.05), np.log(20), 200)):
            p = _softmax(logits / t)
            nll = -np.mean(np.log(np.maximum(p[np.arange(len(truth)), truth], 1e-12)))
            if nll < best_nll:
                best, best_nll = float(t), nll
        return best

    # ------------------------------------------------------------------------------------------- persistence
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, temperature=np.float32(self.temperature), key=np.array(self.config.key()), **self.params)
        tmp.replace(path)  # atomic: a concurrent first use never reads half a file

    @classmethod
    def load(cls, config: TextModelConfig | None = None, retrain: bool = False, progress=None) -> TextClassifier:
        """The head for `config` from the cache, trained and cached first when it is not there (or `retrain`)."""
        from filelock import FileLock

        config = config or TextModelConfig()
        path = cache_dir() / f"text-{config.key()}.npz"
        if path.exists() and not retrain:
            return cls._read(config, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # one trainer at a time: the pipeline's classify workers (and parallel commands) reaching first use together
        # wait for the first one's head instead of each training the same one
        with FileLock(path.with_suffix(".lock")):
            if path.exists() and not retrain:
                return cls._read(config, path)
            model = cls.train(config, progress=progress)
            model.save(path)
        return model

    @classmethod
    def _read(cls, config: TextModelConfig, path: Path) -> TextClassifier:
        data = np.load(path)
        return cls(config, {k: data[k] for k in ("w1", "b1", "w2", "b2")}, float(data["temperature"]))

    # ------------------------------------------------------------------------------------------- inference
    def logits(self, texts: list[str]) -> np.ndarray:
        from scipy.special import erf

        p = self.params
        h = self.features(texts) @ p["w1"] + p["b1"]
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))  # GELU, as trained
        return h @ p["w2"] + p["b2"]

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(n, 6) calibrated class probabilities, columns in `EDIT_TYPES` order."""
        if not texts:
            return np.zeros((0, len(CLASSES)), np.float32)
        return _softmax(self.logits(texts) / self.temperature)

    def predict(self, instructions: list[str]) -> list[Label]:
        p = self.probabilities([str(t) for t in instructions])
        best = p.argmax(axis=1)
        return [Label(CLASSES[k], float(p[i, k]), self.name, needs_review=bool(p[i, k] < self.config.review_threshold))
                for i, k in enumerate(best)]

    def classify(self, instructions: list[str]) -> list[EditType]:
        return [label.edit_type for label in self.predict(instructions)]


def _fit_mlp(x, y, config: TextModelConfig) -> dict[str, np.ndarray]:
    """One hidden GELU layer with dropout, AdamW, shuffled mini-batches from a seeded generator: deterministic."""
    import torch

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = torch.nn.Sequential(torch.nn.Dropout(config.dropout), torch.nn.Linear(x.shape[1], config.hidden),
                              torch.nn.GELU(), torch.nn.Dropout(config.dropout),
                              torch.nn.Linear(config.hidden, len(CLASSES)))
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    net.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            rows = order[start : start + config.batch_size]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
            optimiser.step()
    first, last = net[1], net[4]
    return dict(w1=first.weight.detach().numpy().T.copy(), b1=first.bias.detach().numpy().copy(),
                w2=last.weight.detach().numpy().T.copy(), b2=last.bias.detach().numpy().copy())


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
