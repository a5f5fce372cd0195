"""Evaluation, written once for every caller (`twotower eval`, the training pipeline's version
metrics, the release check, the learning loop's gate and the simulator's report):

- :mod:`~training.evaluation.runs`: rank queries with a version exactly as serving does
  (query tower + every Faiss shard, merged), with BM25, or with their hybrid;
- :mod:`~training.evaluation.metrics`: ir-measures over a run, as means or per query;
- :mod:`~training.evaluation.compare`: the systems side by side, the `twotower eval` table.
"""
