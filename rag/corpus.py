"""Posts: find Markdown files, decode them, parse front matter, clean generated-text artifacts.

Everything here is pure except `iter_post_files`/`read_post`, which touch the file system.
A post that cannot be read raises `PostError` with a reason a person understands; a post
with wrongly typed front-matter fields is kept, with those fields dropped and listed in
`Post.warnings`.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from .config import Settings
from .text import dedup_key, split_sentences

MARKDOWN_SUFFIXES = (".md", ".markdown")
MAX_POST_BYTES = int(Settings.max_post_mb * 2**20)  # the one default lives in Settings


class PostError(Exception):
    """A post that cannot be indexed; the message says why."""


@dataclass
class Post:
    post_id: str
    path: str
    title: str
    body: str
    date: str | None = None
    categories: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    author: str | None = None
    excerpt: str | None = None
    url: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        """Hash of everything that ends up in the index, so a metadata edit also counts as a change."""
        h = hashlib.sha256()
        for part in (self.title, self.date or "", "\x1f".join(self.categories), "\x1f".join(self.tags),
                     self.author or "", self.excerpt or "", self.url or "", self.body):
            h.update(part.encode("utf-8"))
            h.update(b"\x1e")
        return h.hexdigest()


# ---------------------------------------------------------------- discovery

def post_id_for(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return rel.with_suffix("").as_posix()


def iter_post_files(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Yield (path, problem) for every Markdown file under root, following directory symlinks once.

    `problem` is set for entries that cannot be read as files (a symlink loop, a dangling link).
    """
    root = Path(root)
    seen_dirs: set[tuple[int, int]] = set()

    def walk(d: Path) -> Iterator[tuple[Path, str | None]]:
        try:
            st = d.stat()
        except OSError as exc:
            yield d, f"cannot read directory: {exc.strerror or exc}"
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            return
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            yield d, f"cannot list directory: {exc.strerror or exc}"
            return
        for e in entries:
            p = Path(e.path)
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()  # follows symlinks
            except OSError as exc:
                yield p, f"cannot follow link: {exc.strerror or exc}"
                continue
            if is_dir:
                yield from walk(p)
            elif e.name.lower().endswith(MARKDOWN_SUFFIXES):
                if e.is_symlink() and not p.exists():
                    yield p, "symbolic link points nowhere (dangling or a loop)"
                else:
                    yield p, None

    yield from walk(root)


# ---------------------------------------------------------------- decoding

def decode_bytes(data: bytes) -> str:
    """Decode a post: BOMs first, then strict UTF-8, then a detector (Shift_JIS/CP932, EUC-JP, ...)."""
    if not data.strip():
        raise PostError("empty file")
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"),
                     (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
                     (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(enc)
            except UnicodeDecodeError as exc:
                raise PostError(f"invalid {enc} text after byte-order mark: {exc.reason}") from exc
    if b"\x00" in data:
        raise PostError("binary file, not text (contains NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=["cp932", "shift_jis", "euc_jp", "iso2022_jp", "utf_8", "cp1252"]).best()
    if best is None or best.encoding is None:
        raise PostError("cannot decode: not UTF-8 and no known Japanese or Western encoding fits")
    text = str(best)
    bad = sum(1 for ch in text if unicodedata.category(ch) in ("Cc", "Co", "Cn") and ch not in "\n\r\t")
    if bad > max(3, len(text) // 200):
        raise PostError(f"cannot decode: looks like binary data (best guess {best.encoding} gives control characters)")
    return text


# ---------------------------------------------------------------- front matter

_FM_RE = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^(?:---|\.\.\.)[ \t]*$\r?\n?", re.S | re.M)


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split YAML front matter from the body. Posts without front matter are allowed."""
    text = text.lstrip("\ufeff")
    if not text.startswith("---"):
        return {}, text
    m = _FM_RE.match(text)
    if not m:
        raise PostError("front matter starts with '---' but has no closing '---' line")
    raw = m.group(1)
    try:
        meta = yaml.safe_load(raw) if raw.strip() else {}
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 2}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PostError(f"invalid YAML front matter{where}: {problem}") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise PostError(f"front matter must be a mapping of fields, got {type(meta).__name__}")
    return meta, text[m.end():]


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                 "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y-%m-%d", "%Y年%m月%d日")


def parse_date(value: Any) -> str | None:
    """Return an ISO date/datetime string, or None if value is not a date.

    YAML leaves Jekyll's `2025-10-11 01:59:47 +0000` as a string, so strings are parsed here.
    """
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        return None
    s = value.strip()
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).isoformat() if "T" in s or ":" in s \
            else dt.date.fromisoformat(s).isoformat()
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            d = dt.datetime.strptime(s, fmt)
        except ValueError:
            continue
        return d.date().isoformat() if "%H" not in fmt else d.isoformat()
    return None


def _string_list(name: str, value: Any, warnings: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = re.split(r"[,、]\s*|\s+", value.strip()) if ("," in value or "、" in value) else value.split()
        return [p for p in (x.strip() for x in parts) if p]
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, (str, int, float)) and not isinstance(item, bool) and str(item).strip():
                out.append(str(item).strip())
            else:
                warnings.append(f"{name}: ignored an item of type {type(item).__name__} ({item!r})")
        return out
    warnings.append(f"{name}: expected a list of strings, got {type(value).__name__} ({value!r}); field dropped")
    return []


def _scalar_text(name: str, value: Any, warnings: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        warnings.append(f"{name}: expected text, got {type(value).__name__}; field dropped")
        return None
    s = str(value).strip()
    return s or None


def parse_post(text: str, post_id: str, path: str) -> Post:
    """Turn decoded text into a cleaned Post (raises PostError when nothing indexable is left)."""
    meta, body = split_front_matter(text)
    warnings: list[str] = []
    title = _scalar_text("title", meta.get("title"), warnings)
    date = None
    if "date" in meta and meta["date"] is not None:
        date = parse_date(meta["date"])
        if date is None:
            warnings.append(f"date: {meta['date']!r} is not a date; field dropped")
    url = None
    for key in ("permalink", "url", "source_url"):
        url = _scalar_text(key, meta.get(key), warnings)
        if url:
            break
    body = clean_body(body)
    if not body.strip():
        raise PostError("no body text (front matter only or only artifacts)")
    return Post(
        post_id=post_id,
        path=path,
        title=title or _first_heading(body) or post_id.rsplit("/", 1)[-1],
        body=body,
        date=date,
        categories=_string_list("categories", meta.get("categories", meta.get("category")), warnings),
        tags=_string_list("tags", meta.get("tags"), warnings),
        author=_scalar_text("author", meta.get("author"), warnings),
        excerpt=_scalar_text("excerpt", meta.get("excerpt"), warnings),
        url=url,
        warnings=warnings,
    )


def _first_heading(body: str) -> str | None:
    m = re.search(r"^#{1,6}\s+(.+)$", body, re.M)
    return m.group(1).strip() if m else None


def read_post(path: Path, root: Path, max_bytes: int = MAX_POST_BYTES) -> Post:
    """Read, decode and parse one file; raises PostError naming what is wrong."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise PostError(f"cannot read: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise PostError(f"file too large ({size / 2**20:.1f} MB, the limit is {max_bytes / 2**20:g} MB; "
                        f"raise RAG_MAX_POST_MB to index it)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PostError(f"cannot read: {exc.strerror or exc}") from exc
    text = decode_bytes(data)
    return parse_post(text, post_id_for(path, root), str(path))


# ---------------------------------------------------------------- cleaning

_END_RE = re.compile(r"^[ \t]*-{2,}[ \t]*END[ \t]*-{2,}[ \t]*$", re.M | re.I)
_FENCE_RE = re.compile(r"^(```|~~~)")
_HEADING_RE = re.compile(r"^(#{1,6})\s+\S")
_MIN_DUP_CHARS = 12


def split_blocks(body: str) -> list[str]:
    """Paragraphs separated by blank lines; a fenced code block stays one block."""
    blocks: list[str] = []
    cur: list[str] = []
    in_fence = False
    for line in body.splitlines():
        if _FENCE_RE.match(line.strip()):
            in_fence = not in_fence
            cur.append(line)
            continue
        if not in_fence and not line.strip():
            if cur:
                blocks.append("\n".join(cur).strip("\n"))
                cur = []
            continue
        if not in_fence and _HEADING_RE.match(line) and cur:
            blocks.append("\n".join(cur).strip("\n"))
            cur = []
        cur.append(line)
        if not in_fence and _HEADING_RE.match(line):
            blocks.append("\n".join(cur))
            cur = []
    if cur:
        blocks.append("\n".join(cur).strip("\n"))
    return [b for b in blocks if b.strip()]


def dedupe_blocks(blocks: list[str]) -> list[str]:
    """Drop repeated content sentence by sentence: exact repeats and truncated copies.

    Generated posts repeat paragraphs whole, merge several earlier paragraphs into one, and cut
    sentences off mid-way (a truncated sentence is a prefix of a full one elsewhere in the post).
    The first full occurrence of each sentence is kept; code blocks and headings are left alone.
    """
    split = []
    for b in blocks:
        if _HEADING_RE.match(b) or _FENCE_RE.match(b.lstrip()):
            split.append(None)
        else:
            split.append(split_sentences(b))
    keys = [dedup_key(s) for sents in split if sents for s in sents]
    by_prefix: dict[str, set[str]] = {}
    by_suffix: dict[str, set[str]] = {}
    for k in set(keys):
        by_prefix.setdefault(k[:_MIN_DUP_CHARS], set()).add(k)
        by_suffix.setdefault(k[-_MIN_DUP_CHARS:], set()).add(k)

    def truncated(k: str) -> bool:
        """A fragment cut at its end (a prefix of another sentence) or at its start (a suffix)."""
        return (any(len(o) > len(k) and o.startswith(k) for o in by_prefix.get(k[:_MIN_DUP_CHARS], ()))
                or any(len(o) > len(k) and o.endswith(k) for o in by_suffix.get(k[-_MIN_DUP_CHARS:], ())))

    seen: set[str] = set()
    seen_blocks: set[str] = set()
    out: list[str] = []
    for b, sents in zip(blocks, split):
        if sents is None:
            if _FENCE_RE.match(b.lstrip()):
                if b in seen_blocks:
                    continue
                seen_blocks.add(b)
            out.append(b)
            continue
        kept = []
        for s in sents:
            k = dedup_key(s)
            if len(k) >= _MIN_DUP_CHARS:
                if k in seen or truncated(k):
                    continue
                seen.add(k)
            kept.append(s)
        text = "".join(kept).strip()
        if text and dedup_key(text):
            out.append(text)
    return _drop_empty_headings(out)


def _drop_empty_headings(blocks: list[str]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        m = _HEADING_RE.match(b)
        while out:
            prev = _HEADING_RE.match(out[-1])
            if prev and m and len(prev.group(1)) >= len(m.group(1)):
                out.pop()  # previous heading lost all its content
            else:
                break
        out.append(b)
    while out and _HEADING_RE.match(out[-1]):
        out.pop()
    # Two identical consecutive headings (a repeated section whose body was deduplicated).
    dedup: list[str] = []
    for b in out:
        if dedup and _HEADING_RE.match(b) and b.strip() == dedup[-1].strip():
            continue
        dedup.append(b)
    return dedup


def clean_body(body: str) -> str:
    """Remove `---END---` markers and repeated paragraphs; normalise line endings."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    body = _END_RE.sub("", body)
    return "\n\n".join(dedupe_blocks(split_blocks(body)))
