"""A hostile archive: every kind of bad post issue 13 found, beside good ones.

`build(root, outside)` writes it and returns {relative path: substring its skip reason must contain};
`python -m tests.hostile_archive DIR` writes one at DIR/posts (with DIR/outside) for a manual
`rag ingest DIR/posts` run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

GOOD = {
    "good/tokio.markdown": ("Tokio入門", "Rustの非同期ランタイムTokioはワークスティーリングでタスクを分散します。"),
    "good/wal.md": ("SQLiteのWAL", "SQLiteはWALモードにすると読み込みと書き込みが並行できます。"),
    "good/image.md": ("画像つきの記事", "画像を埋め込んだ記事です。\n\n![x](data:image/png;base64,"
                      + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ" * 200 + ")\n\n画像の後の文章です。"),
}
MAX_POST_MB = 0.25  # the settings the hostile run uses: the 2 MB base64 post is over it


def _post(title: str, body: str) -> str:
    return f'---\ntitle: "{title}"\n---\n\n{body}\n'


def build(root: Path, outside: Path) -> dict[str, str]:
    root, outside = root.resolve(), outside.resolve()  # the links must point at absolute targets
    root.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    for rel, (title, body) in GOOD.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(_post(title, body), encoding="utf-8")
    (outside / "secret.env").write_text(_post("secret", "API_TOKEN=do-not-index-me"), encoding="utf-8")
    (outside / "notes.md").write_text(_post("notes", "private notes do-not-index-me"), encoding="utf-8")
    bad = root / "bad"
    bad.mkdir(exist_ok=True)
    w = lambda name, text: (bad / name).write_text(text, encoding="utf-8")  # noqa: E731
    w("huge-int-title.md", "---\ntitle: " + "9" * 5000 + "\n---\n本文です。")
    w("nested-tags.md", "---\ntags: " + "[" * 3000 + "\n---\n本文です。")
    levels = ['a: &a ["xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx"]']
    for prev, cur in (("a", "b"), ("b", "c"), ("c", "d")):
        levels.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    w("alias-bomb.md", "---\n" + "\n".join(levels) + "\ntags: [*d, *d]\n---\n本文です。")
    w("unclosed-yaml.md", '---\ntitle: "unclosed\n---\n本文')
    w("only-front-matter.md", "---\ntitle: x\n---\n\n")
    (bad / "empty.md").write_bytes(b"")
    (bad / "binary.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR" + bytes(range(256)))
    w("base64-2mb.md", _post("巨大な画像", "![x](data:image/png;base64," + "QUJD" * 500_000 + ")"))
    # same id as good/tokio.markdown, and second in name order
    (root / "good" / "tokio.md").write_text(_post("同じid", "同じidの二つ目の記事です。"), encoding="utf-8")
    (bad / "secret.md").symlink_to(outside / "secret.env")
    (bad / "zero.md").symlink_to("/dev/zero")
    (bad / "dangling.md").symlink_to(root / "no-such-file.md")
    (bad / "outside-dir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(bad / "fifo.md")
    return {
        "bad/huge-int-title.md": "Exceeds the limit",
        "bad/nested-tags.md": "nested deeper than 20 levels",
        "bad/alias-bomb.md": "anchors and aliases",
        "bad/unclosed-yaml.md": "invalid YAML",
        "bad/only-front-matter.md": "no body text",
        "bad/empty.md": "empty file",
        "bad/binary.md": "binary",
        "bad/base64-2mb.md": "too large",
        "good/tokio.md": "duplicate post id 'good/tokio' (also good/tokio.markdown)",
        "bad/secret.md": "outside the archive",
        "bad/zero.md": "outside the archive",
        "bad/dangling.md": "points nowhere",
        "bad/outside-dir": "outside the archive",
        "bad/fifo.md": "not a regular file",
    }


if __name__ == "__main__":
    base = Path(sys.argv[1])
    for rel, reason in build(base / "posts", base / "outside").items():
        print(f"{rel}: expect {reason!r}")
