"""Posts: find Markdown files, decode them, parse front matter, clean generated-text artifacts.

Everything here is pure except `iter_post_files`/`read_post`, which touch the file system.
A post that cannot be read raises `PostError` with a reason a person understands; a post
with wrongly typed front-matter fields is kept, with those fields dropped and listed in
`Post.warnings`.
"""

from __future__ import annotations

import bisect
import codecs
import datetime as dt
import hashlib
import os
import re
import reprlib
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from .config import Settings
from .text import dedup_key, fenced_lines, is_fence, split_sentences

MARKDOWN_SUFFIXES = (".md", ".markdown")
MAX_POST_BYTES = int(Settings.max_post_mb * 2**20)  # the one default lives in Settings


class PostError(Exception):
    """A post that cannot be indexed; the message says why."""


class PostExcluded(PostError):
    """A file the site's generator does not publish as a post (draft, unpublished, redirect stub)."""

    def __init__(self, reason: str, redirect: str | None = None):
        super().__init__(reason)
        self.redirect = redirect


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


def safe_post_path(root: Path, path: Path, want_dir: bool = False) -> Path:
    """The resolved `path` if it may be read as part of the archive at `root`, else PostError saying why.

    The rules every walker of an archive shares (posts here, site discovery elsewhere): links are
    resolved, and the target must lie inside the resolved root and be a regular file (or, with
    `want_dir`, a directory): never `~/.config/secret.env`, `/dev/zero` or a FIFO.
    """
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError as exc:
        if os.path.islink(path):
            raise PostError("symbolic link points nowhere (dangling or a loop)") from None
        raise PostError(f"cannot read: {exc.strerror or exc}") from None
    root_real = Path(os.path.realpath(root))
    if real != root_real and not real.is_relative_to(root_real):
        raise PostError(f"links outside the archive folder (to {real}); only files inside {root} are read")
    try:
        st = os.stat(real)
    except OSError as exc:
        raise PostError(f"cannot read: {exc.strerror or exc}") from None
    if want_dir:
        if not stat.S_ISDIR(st.st_mode):
            raise PostError("not a directory")
    elif not stat.S_ISREG(st.st_mode):
        raise PostError("not a regular file (a device, FIFO or socket); only regular files are read")
    return real


def read_limited(path: Path, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes of a regular file, opened without blocking (a FIFO swapped in
    after the check cannot hang the reader); raises PostError when it is larger than max_bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PostError(f"cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PostError("not a regular file (a device, FIFO or socket); only regular files are read")
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise PostError(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        size = max(len(data), os.path.getsize(path))
        raise PostError(f"file too large ({size / 2**20:.1f} MB, the limit is {max_bytes / 2**20:g} MB; "
                        f"raise RAG_MAX_POST_MB to index it)")
    return data


def iter_post_files(root: Path) -> Iterator[tuple[Path, str | None]]:
    """Yield (path, problem) for every Markdown file under root, following directory symlinks once.

    `problem` is set for entries that cannot be read (a dangling link, a link out of the archive,
    a FIFO) and for folders that cannot be listed (their path is then a directory).
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
                if e.is_symlink():
                    try:
                        safe_post_path(root, p, want_dir=True)
                    except PostError as exc:
                        yield p, str(exc)
                        continue
                yield from walk(p)
            elif e.name.lower().endswith(MARKDOWN_SUFFIXES):
                try:
                    safe_post_path(root, p)
                except PostError as exc:
                    yield p, str(exc)
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

MAX_FRONT_MATTER_DEPTH = 20


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader without anchors and aliases (`&a [*b, *b, ...]` expands exponentially: a billion
    laughs) and with a nesting limit (3,000 `[` took PyYAML 3 s to turn into a RecursionError)."""

    _depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (& and *) are not allowed",
                                              event.start_mark)
        if self._depth >= MAX_FRONT_MATTER_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_FRONT_MATTER_DEPTH} levels",
                                              event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 120
_REPR.maxlevel = 3


def clip(text: str, limit: int = 200) -> str:
    """A message part cut to `limit` characters."""
    return text if len(text) <= limit else text[:limit] + "…"


def short_repr(value: Any, limit: int = 200) -> str:
    """repr() for messages: bounded in work and length, whatever the value."""
    try:
        r = _REPR.repr(value)
    except (RecursionError, ValueError):
        r = f"<{type(value).__name__}>"
    return clip(r, limit)


_FM_RE = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^(?:---|\.\.\.)[ \t]*$\r?\n?", re.S | re.M)
_TOML_FM_RE = re.compile(r"\A\+\+\+[ \t]*\r?\n(.*?)(?:\r?\n)?^\+\+\+[ \t]*$\r?\n?", re.S | re.M)


def _split_toml_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Hugo's `+++` TOML front matter."""
    import tomllib

    m = _TOML_FM_RE.match(text)
    if not m:
        raise PostError("front matter starts with '+++' but has no closing '+++' line")
    try:
        meta = tomllib.loads(m.group(1))
    except tomllib.TOMLDecodeError as exc:
        raise PostError(f"invalid TOML front matter: {exc}") from exc
    return meta, text[m.end():]


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Split YAML front matter from the body. Posts without front matter are allowed."""
    text = text.lstrip("\ufeff")
    if text.startswith("+++"):
        return _split_toml_front_matter(text)
    if not text.startswith("---"):
        return {}, text
    m = _FM_RE.match(text)
    if not m:
        raise PostError("front matter starts with '---' but has no closing '---' line")
    raw = m.group(1)
    try:
        meta = yaml.load(raw, Loader=_FrontMatterLoader) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:  # a 5,000-digit number; 3,000 nested brackets
        raise PostError(f"invalid YAML front matter: {clip(str(exc))}") from None
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
                warnings.append(f"{name}: ignored an item of type {type(item).__name__} ({short_repr(item)})")
        return out
    warnings.append(f"{name}: expected a list of strings, got {type(value).__name__} ({short_repr(value)}); field dropped")
    return []


def _scalar_text(name: str, value: Any, warnings: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        warnings.append(f"{name}: expected text, got {type(value).__name__}; field dropped")
        return None
    s = str(value).strip()
    return s or None


def _author(value: Any, warnings: list[str]) -> str | None:
    """The author as text; Hugo themes also write it as a table (`[author] name = "…"`) or a list."""
    if isinstance(value, dict) and "name" in value:
        return _scalar_text("author.name", value["name"], warnings)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ", ".join(v.strip() for v in value if v.strip()) or None
    return _scalar_text("author", value, warnings)


def parse_post(text: str, post_id: str, path: str, site=None, rel: str | None = None) -> Post:
    """Turn decoded text into a cleaned Post (raises PostError when nothing indexable is left).

    With a `site` (rag.sites.Site), date, categories and URL are the generator's, and a file it
    does not publish raises PostExcluded.
    """
    from .sites import site_post, strip_markup

    meta, body = split_front_matter(text)
    warnings: list[str] = []
    sp = None
    if site is not None:
        sp = site_post(site, rel or post_id, meta, body)
        if sp.redirect is not None:
            raise PostExcluded(f"redirect to {sp.redirect}", redirect=sp.redirect)
        if sp.excluded:
            raise PostExcluded(sp.excluded)
        warnings += sp.warnings
    title = _scalar_text("title", meta.get("title"), warnings)
    date = None
    if sp is not None:
        date = sp.date
    elif "date" in meta and meta["date"] is not None:
        date = parse_date(meta["date"])
        if date is None:
            warnings.append(f"date: {short_repr(meta['date'])} is not a date; field dropped")
    url = sp.url if sp is not None else None
    for key in ("permalink", "url", "source_url") if sp is None else ():
        url = _scalar_text(key, meta.get(key), warnings)
        if url:
            break
    body = clean_body(strip_markup(body, site.kind if site is not None else None))
    if not body.strip():
        raise PostError("no body text (front matter only or only artifacts)")
    return Post(
        post_id=post_id,
        path=path,
        title=title or _first_heading(body) or post_id.rsplit("/", 1)[-1],
        body=body,
        date=date,
        categories=sp.categories if sp is not None else _string_list(
            "categories", meta.get("categories", meta.get("category")), warnings),
        tags=_string_list("tags", meta.get("tags"), warnings),
        author=_author(meta.get("author"), warnings),
        excerpt=_scalar_text("excerpt", meta.get("excerpt"), warnings),
        url=url,
        warnings=warnings,
    )


def _first_heading(body: str) -> str | None:
    m = re.search(r"^#{1,6}\s+(.+)$", body, re.M)
    return m.group(1).strip() if m else None


def read_post(path: Path, root: Path, max_bytes: int = MAX_POST_BYTES, site=None) -> Post:
    """Read, decode and parse one file; raises PostError naming what is wrong."""
    data = read_limited(safe_post_path(root, path), max_bytes)
    text = decode_bytes(data)
    return parse_post(text, post_id_for(path, root), str(path), site, path.relative_to(root).as_posix())


# ---------------------------------------------------------------- cleaning

_END_RE = re.compile(r"^[ \t]*-{2,}[ \t]*END[ \t]*-{2,}[ \t]*$", re.M | re.I)
_HEADING_RE = re.compile(r"^(#{1,6})\s+\S")
_MIN_DUP_CHARS = 12


def split_blocks(body: str) -> list[str]:
    """Paragraphs separated by blank lines; a fenced code block stays one block."""
    blocks: list[str] = []
    cur: list[str] = []
    lines = body.splitlines()
    for line, in_fence in zip(lines, fenced_lines(lines)):
        if in_fence:
            cur.append(line)
            continue
        if not line.strip():
            if cur:
                blocks.append("\n".join(cur).strip("\n"))
                cur = []
            continue
        if _HEADING_RE.match(line) and cur:
            blocks.append("\n".join(cur).strip("\n"))
            cur = []
        cur.append(line)
        if _HEADING_RE.match(line):
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
        if _HEADING_RE.match(b) or is_fence(b.lstrip()):
            split.append(None)
        else:
            split.append(split_sentences(b, keep_quotes=False))
    keys = sorted({dedup_key(s) for sents in split if sents for s in sents})
    rkeys = sorted(k[::-1] for k in keys)

    def extended(k: str, ordered: list[str]) -> bool:
        # in sorted order, the strings that start with k come right after k: one comparison, not a scan
        i = bisect.bisect_right(ordered, k)
        return i < len(ordered) and ordered[i].startswith(k)

    def truncated(k: str) -> bool:
        """A fragment cut at its end (a prefix of another sentence) or at its start (a suffix)."""
        return extended(k, keys) or extended(k[::-1], rkeys)

    seen: set[str] = set()
    seen_blocks: set[str] = set()
    out: list[str] = []
    for b, sents in zip(blocks, split):
        if sents is None:
            if is_fence(b.lstrip()):
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
