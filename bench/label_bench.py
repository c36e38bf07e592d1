"""Edit-type labelling throughput: instructions per second for the rules, the offline text classifier and the
endpoint classifier (against a local fake endpoint, so it measures our client, not a model).

The text classifier's fair baseline is its floor, measured in the same run on the same instructions and threads:
the MiniLM sentence embedding alone (the head and the rules add the rest).

    python bench/label_bench.py [--n 2000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT.parent)]
from common import report, timeit  # noqa: E402

from refvie.labels import RuleClassifier  # noqa: E402
from refvie.labels.endpoint import EndpointClassifier, EndpointConfig  # noqa: E402
from refvie.labels.grammar import corpus  # noqa: E402
from refvie.labels.text_model import TextClassifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--endpoint-n", type=int, default=400)
    args = parser.parse_args()
    texts = [t for t, _ in corpus(args.n // 6 + 1, seed=123)][: args.n]  # a seed the classifier never saw
    model = TextClassifier.load()
    embedder = model._embedder()
    rules = RuleClassifier()

    # the shared embedder remembers recent texts: forget them before each call, so both sides embed every text
    text_s = timeit(lambda: (embedder.recent.clear(), model.predict(texts)), repeat=3)
    floor_s = timeit(lambda: (embedder.recent.clear(), embedder(texts)), repeat=3)
    rules_s = timeit(lambda: rules.predict(texts), repeat=3)

    from tests.fake_judge import FakeJudge

    server = FakeJudge()
    server.default = ("answer", "category: other; confidence: 0.9")
    try:
        endpoint = EndpointClassifier(EndpointConfig(server.url, "fake", concurrency=8))
        few = texts[: args.endpoint_n]
        endpoint_s = timeit(lambda: endpoint.predict(few), repeat=3)
    finally:
        server.close()

    print(f"\n{args.n} instructions: rules {args.n / rules_s:,.0f}/s, text classifier {args.n / text_s:,.0f}/s, "
          f"MiniLM embedding alone {args.n / floor_s:,.0f}/s; fake endpoint (8 in flight, no cache) "
          f"{len(few) / endpoint_s:,.0f}/s")
    report("label_bench", [
        dict(what=f"text classifier, {args.n} instructions", ours_s=text_s,
             baseline="MiniLM embedding alone (the floor)", baseline_s=floor_s),
        dict(what=f"rules, {args.n} instructions", ours_s=rules_s,
             baseline="text classifier", baseline_s=text_s),
    ], ROOT / "results" / "label_bench.json")


if __name__ == "__main__":
    main()
