"""What the teacher is worth to a corpus trained without labels: a slice of MS MARCO as the
corpus, trained from each start with distillation on and off, dev queries ranked against it.

``--lower`` lower-cases the passages: the teacher (uncased) reads the same text, but the
shipped cache misses every one, so the corpus's vectors are all computed as for a new corpus
(stored in the running stack's S3, under the corpus name ``exp-lower``).

    python -m experiments.corpus_distillation [--passages 5000] [--profile quick] [--lower]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from cluster.config import get_settings
from training import datasets
from training.corpus_pipeline import STARTS, CorpusSource, build_corpus_version
from training.pipeline import get_profile, with_overrides


def corpus_slice(passages: int, lower: bool) -> datasets.Collection:
    collection = datasets.judged_slice(passages)
    texts = [t.lower() for t in collection.texts] if lower else collection.texts
    return datasets.Collection(collection.ids, texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=5000)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--lower", action="store_true")
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=STARTS)
    args = parser.parse_args()
    settings = get_settings().model_copy(update={"train_executor": "local"})
    name = "exp-lower" if args.lower else "exp-slice"
    corpus = CorpusSource(name, "s0", corpus_slice(args.passages, args.lower))
    evals = {"dev": (datasets.load_queries("dev"), datasets.load_qrels("dev"))}
    print("start    teacher  dev MRR@10 (slice)  seconds")
    for start in args.starts:
        for teacher in ("true", "false"):
            profile = with_overrides(
                get_profile(args.profile), [f"data.teacher={teacher}", "ablation=false"]
            )
            began = time.time()
            with TemporaryDirectory() as out:
                metrics = build_corpus_version(
                    settings, profile, corpus, Path(out) / "v", start, evals, log=lambda *_: None
                )
            mrr = metrics["dev"]["MRR@10"]
            print(f"{start:<8} {teacher:<8} {mrr:.4f}              {time.time() - began:.0f}")


if __name__ == "__main__":
    main()
