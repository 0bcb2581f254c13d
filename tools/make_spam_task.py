"""Build lmforge's built-in `spam` vertical task from ../shared/data/spam (SpamAssassin).

    python tools/make_spam_task.py ../shared/data/spam src/lmforge/data/builtin/spam

Each message becomes {"text": subject + " | " + body, "label": "ham" | "spam"} with whitespace
runs collapsed to one space and the text cut to its first 1,000 characters (at a space where one
falls in the last 100): the models here read at most a few hundred tokens, and the cut keeps the
package small. The splits are the source's (train / valid / test, held-out duplicates removed
there). Output: <split>.jsonl.xz, plus the licence files copied as they are.
"""

import json
import lzma
import re
import shutil
import sys
from pathlib import Path

LIMIT = 1000


def cut(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= LIMIT:
        return text
    space = text.rfind(" ", LIMIT - 100, LIMIT)
    return text[: space if space > 0 else LIMIT]


def main(source: str, out: str) -> None:
    src, dst = Path(source), Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        rows = []
        for line in (src / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            mail = json.loads(line)
            text = cut(f"{mail['subject']} | {mail['body']}")
            rows.append(json.dumps({"text": text, "label": mail["label"]}, ensure_ascii=False))
        data = ("\n".join(rows) + "\n").encode("utf-8")
        (dst / f"{split}.jsonl.xz").write_bytes(lzma.compress(data, preset=9))
        print(split, len(rows))
    for name in ("LICENSE-upstream", "NOTICE-upstream"):
        shutil.copyfile(src / name, dst / name)


if __name__ == "__main__":
    main(*sys.argv[1:3])
