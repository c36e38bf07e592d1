"""Evaluation per edit category: benches (frozen from the lake's bench split, or imported from the published
layouts), scorers (automatic metrics, CLIP, a VLM judge), the published aggregation, and the rebalancing
experiment. `kiwi eval` runs it from the command line; notebooks/04_evaluate.ipynb from a notebook."""
