"""Ship the titles and authors of lmforge's built-in `tang` poems, and the tang-chat fact list.

    python tools/make_tang_chat.py ../shared/data/tang src/lmforge/data/builtin/tang

The source is the shared data's `tang/{train,valid,test}.tsv` (title TAB author TAB body, from
npm `chinese-poetry` 2.0.1, MIT). The shipped bodies (`<split>.txt.xz`) are its body column, the
train split cut to its first 30,000 poems; this script checks that they match line for line.

Output, in the built-in folder:

* `<split>.meta.tsv.xz`: `title<TAB>author` of every shipped poem, line i beside line i of
  `<split>.txt.xz` (xz preset 9 | extreme, like the bodies).
* `chat_facts.jsonl`: the 500 poems whose title and author tang-chat teaches, one
  `{"title", "author", "first_line"}` per line in corpus order. A poem qualifies when it is in
  the shipped train split, its first line (up to the first 。) is a regular couplet of two
  5- or 7-character halves of ideographs that begins no other of the 57,607 poems, its title is
  2 to 6 ideographs and no other qualifying poem has it, and its author is 2 to 4 ideographs
  (not 不詳 or 無名氏, "unknown"). The 50 authors with the most qualifying poems give 10 each,
  drawn with `random.Random(18)`.
"""

import json
import lzma
import random
import re
import sys
from collections import Counter
from pathlib import Path

SPLITS = {"train": 30_000, "valid": None, "test": None}  # how many poems each split ships
PRESET = 9 | lzma.PRESET_EXTREME
AUTHORS, PER_AUTHOR, SEED = 50, 10, 18
UNKNOWN_AUTHORS = ("不詳", "無名氏")
HAN = re.compile(r"[\u4e00-\u9fff]+")
COUPLET = re.compile(r"([\u4e00-\u9fff]{5}|[\u4e00-\u9fff]{7})，([\u4e00-\u9fff]+)。")


def first_line(body: str) -> str:
    """The body up to and including its first sentence end (。！？；)."""
    end = re.search(r"[。！？；]", body)
    return body[: end.end()] if end else body


def read_rows(source: Path, split: str) -> list[list[str]]:
    lines = (source / f"{split}.tsv").read_text(encoding="utf-8").split("\n")[:-1]
    return [line.split("\t") for line in lines]


def write_meta(source: Path, out: Path) -> dict[str, list[list[str]]]:
    """Check the shipped bodies against the source and write the meta files."""
    rows = {split: read_rows(source, split) for split in SPLITS}
    for split, limit in SPLITS.items():
        shipped = lzma.decompress((out / f"{split}.txt.xz").read_bytes()).decode()
        kept = rows[split][:limit]
        if shipped != "".join(body + "\n" for _, _, body in kept):
            raise SystemExit(f"{split}: the shipped bodies differ from {source}/{split}.tsv")
        meta = "".join(f"{title}\t{author}\n" for title, author, _ in kept)
        (out / f"{split}.meta.tsv.xz").write_bytes(lzma.compress(meta.encode(), preset=PRESET))
        print(split, len(kept), "poems")
    return rows


def qualifies(title: str, author: str, body: str, openings: Counter) -> bool:
    line = first_line(body)
    match = COUPLET.fullmatch(line)
    return (
        match is not None
        and len(match[1]) == len(match[2])
        and openings[line] == 1
        and HAN.fullmatch(title) is not None
        and 2 <= len(title) <= 6
        and HAN.fullmatch(author) is not None
        and 2 <= len(author) <= 4
        and author not in UNKNOWN_AUTHORS
    )


def choose_facts(rows: dict[str, list[list[str]]]) -> list[dict[str, str]]:
    openings = Counter(first_line(body) for split in rows for _, _, body in rows[split])
    train = rows["train"][: SPLITS["train"]]
    good = [i for i, row in enumerate(train) if qualifies(*row, openings)]
    titles = Counter(train[i][0] for i in good)
    good = [i for i in good if titles[train[i][0]] == 1]
    by_author: dict[str, list[int]] = {}
    for i in good:
        by_author.setdefault(train[i][1], []).append(i)
    ranked = sorted(by_author, key=lambda a: -len(by_author[a]))[:AUTHORS]  # stable: ties in order
    rng = random.Random(SEED)
    chosen = sorted(i for a in ranked for i in rng.sample(by_author[a], PER_AUTHOR))
    return [
        {"title": train[i][0], "author": train[i][1], "first_line": first_line(train[i][2])}
        for i in chosen
    ]


def main(source: str, out: str) -> None:
    src, dst = Path(source), Path(out)
    rows = write_meta(src, dst)
    facts = choose_facts(rows)
    text = "".join(json.dumps(fact, ensure_ascii=False) + "\n" for fact in facts)
    (dst / "chat_facts.jsonl").write_text(text, encoding="utf-8")
    print("facts", len(facts))


if __name__ == "__main__":
    main(*sys.argv[1:3])
