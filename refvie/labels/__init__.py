"""Edit-type labels: the rules (fast first pass), the offline text classifier (the default), an endpoint
classifier, label maps for datasets that carry their own taxonomy, and scoring against labelled sets."""

from __future__ import annotations

from refvie.labels.base import EditClassifier, Label, read_labelled
from refvie.labels.rules import RuleClassifier

CLASSIFIERS = ("rules", "text", "endpoint")
DEFAULT_CLASSIFIER = "text"


def make_classifier(name: str = DEFAULT_CLASSIFIER, endpoint_url: str | None = None,
                    endpoint_model: str | None = None, cache_dir: str | None = None, progress=None) -> EditClassifier:
    """`rules`, `text` (trained and cached on first use) or `endpoint` (needs a URL and a model name)."""
    if name == "rules":
        return RuleClassifier()
    if name == "text":
        from refvie.labels.text_model import TextClassifier

        return TextClassifier.load(progress=progress)
    if name == "endpoint":
        if not endpoint_url or not endpoint_model:
            raise ValueError("the endpoint classifier needs --endpoint-url and --endpoint-model")
        from refvie.labels.endpoint import EndpointClassifier, EndpointConfig

        return EndpointClassifier(EndpointConfig(endpoint_url, endpoint_model, cache_dir=cache_dir))
    raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")


__all__ = ["CLASSIFIERS", "DEFAULT_CLASSIFIER", "EditClassifier", "Label", "RuleClassifier", "make_classifier",
           "read_labelled"]
