"""Which half of "seven moving left" an omni model gets right: the digit and the direction of
its video -> text answers, apart, on a sample of training and of test videos.

    python benchmarks/omni_video.py runs/omni/v4 [--n 150]
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

from lmforge.omni.modalities import MODALITIES
from lmforge.omni.model import Omni
from lmforge.omni.tasks import conversation
from lmforge.omni.train import banks_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--n", type=int, default=150, help="videos per split")
    args = parser.parse_args()
    omni = Omni.load(args.folder)
    seed = omni.record.get("config", {}).get("seed", 0)
    for split in ("train", "test"):
        items = MODALITIES["video"].load(split, seed=seed)
        banks = banks_of({"video": omni.tokenizers["video"]}, {"video": items})
        rng = random.Random(seed)
        asked, golds = [], []
        for index in rng.sample(range(len(items)), min(args.n, len(items))):
            messages, gold = conversation("video->text", banks, rng, index)
            asked.append(messages[:-1])
            golds.append(gold.split())
        replies = omni.reply(asked, seed=seed)
        said = ["".join(p for p in r if isinstance(p, str)).split() for r in replies]
        digit = sum(s[:1] == g[:1] for s, g in zip(said, golds, strict=True)) / len(golds)
        way = sum(s[-1:] == g[-1:] for s, g in zip(said, golds, strict=True)) / len(golds)
        both = sum(s == g for s, g in zip(said, golds, strict=True)) / len(golds)
        common = Counter(" ".join(s) for s in said).most_common(3)
        print(f"{split}: digit {digit:.3f}, direction {way:.3f}, both {both:.3f}; said {common}")


if __name__ == "__main__":
    main()
