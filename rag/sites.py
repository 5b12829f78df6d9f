"""Static-site generators: read a Jekyll or Hugo site the way the generator builds it.

`detect_site(root)` finds the generator from its config file; `site_post(site, rel, meta)` then
decides, for one file, whether the generator publishes it as a post and with which date,
categories and public URL; `strip_markup(body, kind)` removes what a reader never sees
(Liquid, Hugo shortcodes, kramdown attribute lists, HTML comments). Everything here is pure
except the two config readers.

Jekyll rules followed (Jekyll 4): posts are files named `YYYY-MM-DD-title.ext` in any `_posts/`
folder; `_drafts/`, `published: false` and (unless `future: true`) future dates are left out;
front matter `date` wins over the file name's and is read in the site's `timezone`; categories
are the folders above `_posts/` followed by front-matter `category`/`categories`; the URL is
`url` + `baseurl` + the post's `permalink`, else the `permalink` of `defaults` / `collections.posts`
/ the site (`date` by default), with the built-in styles `date`, `pretty`, `ordinal`, `weekdate`,
`none` and the placeholders of Jekyll's URL drop.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import yaml

from .text import outside_fences

JEKYLL_CONFIGS = ("_config.yml", "_config.yaml", "_config.toml")
HUGO_CONFIGS = ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json", "config.toml", "config.yaml", "config.yml",
                "config.json")

JEKYLL_STYLES = {
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "pretty": "/:categories/:year/:month/:day/:title/",
    "ordinal": "/:categories/:year/:y_day/:title:output_ext",
    "weekdate": "/:categories/:year/W:week/:short_day/:title:output_ext",
    "none": "/:categories/:title:output_ext",
}
# Folders Jekyll never reads posts from (its output, dependencies) besides its `exclude` list.
JEKYLL_SKIP_DIRS = {"_site", "node_modules", "vendor", ".jekyll-cache", ".sass-cache"}

_POST_NAME = re.compile(r"^(\d{2,4})-(\d{1,2})-(\d{1,2})-(.+)$")
_PRETTY_KEEP = "._~!$&'()+,;="


class SiteError(ValueError):
    """A site config file that cannot be read."""


@dataclass(frozen=True)
class Site:
    kind: str                      # "jekyll" or "hugo"
    root: Path
    config_file: str
    config: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def base_url(self) -> str:
        """Scheme + host + base path, no trailing slash ("" when the site states no url)."""
        if self.kind == "jekyll":
            url = str(self.config.get("url") or "").rstrip("/")
            base = str(self.config.get("baseurl") or "").strip("/")
            return url + ("/" + base if base else "")
        return str(self.config.get("baseURL") or self.config.get("baseurl") or "").rstrip("/")

    @property
    def timezone(self) -> dt.tzinfo | None:
        name = self.config.get("timezone" if self.kind == "jekyll" else "timeZone")
        if not name:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            return None


@dataclass
class SitePost:
    """What the generator makes of one file: a post (date, URL, categories) or a reason it is left out."""
    excluded: str | None = None    # why the generator does not publish it as a post
    redirect: str | None = None    # a redirect stub's target
    date: str | None = None
    url: str | None = None
    categories: list[str] = field(default_factory=list)
    slug: str | None = None
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- detection and config

def _load_config(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SiteError(f"cannot read site config {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SiteError(f"site config {path} must be a mapping, got {type(data).__name__}")
    return data


def detect_site(root: Path) -> Site | None:
    """A Jekyll site (`_config.yml`) or a Hugo site (`hugo.toml`, `config.toml`, … or `config/_default/`)."""
    root = Path(root)
    for name in JEKYLL_CONFIGS:
        if (root / name).is_file():
            return Site("jekyll", root, name, _load_config(root / name))
    candidates = [root / n for n in HUGO_CONFIGS] + [root / "config" / "_default" / n for n in HUGO_CONFIGS]
    for p in candidates:
        if p.is_file():
            cfg = _load_config(p)
            if p.name.startswith("config.") and p.parent == root and not (root / "content").is_dir():
                continue  # a config.toml without content/ is not a Hugo site
            return Site("hugo", root, p.relative_to(root).as_posix(), cfg)
    return None


# ---------------------------------------------------------------- small helpers

def slugify(text: str, mode: str = "default", cased: bool = False) -> str:
    """Jekyll's Utils.slugify for the modes "default" and "pretty" (Unicode letters and digits kept)."""
    keep = _PRETTY_KEEP + "@" if mode == "pretty" else ""
    out, dash = [], False
    for ch in unicodedata.normalize("NFC", str(text)):
        ok = (ch.isalnum() or unicodedata.category(ch).startswith("M")) and ch != "_" or ch in keep
        if ok:
            out.append(ch)
            dash = False
        elif not dash:
            out.append("-")
            dash = True
    s = "".join(out).strip("-")
    return s if cased else s.lower()


def urlize(text: str) -> str:
    """Hugo's urlize for a title: lower case, spaces to hyphens, punctuation other than -_. dropped."""
    s = re.sub(r"\s+", "-", str(text).strip())
    s = "".join(ch for ch in s if ch.isalnum() or ch in "-_." or unicodedata.category(ch).startswith("M"))
    return re.sub(r"-{2,}", "-", s).lower()


def escape_path(path: str) -> str:
    """Percent-encode a URL path as Jekyll and Hugo do (UTF-8; reserved path characters kept)."""
    return quote(path, safe="/!$&'()*+,;=:@~")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return [str(value)]


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def parse_site_date(value: Any, tz: dt.tzinfo | None) -> dt.datetime | dt.date | None:
    """A front-matter date as the generator reads it: with a time, converted to the site's time
    zone when it has one (a naive time is taken to be in it); a bare day stays a day."""
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        return value
    elif isinstance(value, str):
        s = value.strip()
        m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", s)
        if m:
            return dt.date(*map(int, m.groups()))
        s = re.sub(r"\s+([+-]\d{2}):?(\d{2})$", r"\1\2", s)  # "… 12:00:00 +0000" -> "…12:00:00+0000"
        s = re.sub(r"\s*(Z|UTC)$", "+0000", s)
        d = None
        for fmt in ("%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z",
                    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
                    "%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
            try:
                d = dt.datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
        if d is None:
            return None
    else:
        return None
    if d.tzinfo is None:
        return d.replace(tzinfo=tz) if tz else d
    return d.astimezone(tz) if tz else d


def _iso(d: dt.date | dt.datetime) -> str:
    return d.isoformat()


# ---------------------------------------------------------------- Jekyll

def jekyll_template(permalink: str | None) -> str:
    """A permalink setting as a template: a built-in style name or a pattern."""
    p = str(permalink or "date").strip()
    return JEKYLL_STYLES.get(p, p)


def jekyll_path(template: str, date: dt.date, slug: str, categories: list[str], output_ext: str = ".html",
                collection: str = "posts") -> str:
    """The URL path of a post, as Jekyll's URL class fills a template: placeholders replaced
    (longest name first), an empty one taking its leading "/" with it, values percent-encoded,
    repeated slashes squeezed."""
    d = date if isinstance(date, dt.datetime) else dt.datetime(date.year, date.month, date.day)
    cats = "/".join(_dedupe([c.lower() for c in categories]))
    values = {
        "collection": collection, "categories": cats,
        "year": d.strftime("%Y"), "month": d.strftime("%m"), "day": d.strftime("%d"),
        "hour": d.strftime("%H"), "minute": d.strftime("%M"), "second": d.strftime("%S"),
        "i_month": str(d.month), "i_day": str(d.day), "short_year": d.strftime("%y"),
        "short_month": d.strftime("%b"), "long_month": d.strftime("%B"),
        "y_day": d.strftime("%j"), "week": d.strftime("%V"), "short_day": d.strftime("%a"),
        "long_day": d.strftime("%A"), "w_year": d.strftime("%G"), "w_day": str(d.isoweekday()),
        "title": slugify(slug, "pretty", cased=True), "slug": slugify(slug),
        "name": slugify(slug, "pretty"), "path": "", "output_ext": output_ext,
    }
    out = template
    for key in sorted(values, key=len, reverse=True):
        if ":" not in out:
            break
        if values[key] == "":
            out = out.replace("/:" + key, "").replace(":" + key, "")
        else:
            out = out.replace(":" + key, escape_path(values[key]))
    out = "/" + out.replace("..", "/").replace("./", "")
    return re.sub(r"/{2,}", "/", out)


def _jekyll_defaults(config: dict, rel: str) -> dict:
    """Front-matter defaults whose scope covers a post (more specific paths applied later, so they win)."""
    scoped = []
    for d in config.get("defaults") or []:
        if not isinstance(d, dict) or not isinstance(d.get("values"), dict):
            continue
        scope = d.get("scope") or {}
        path = str(scope.get("path") or "").strip("/")
        kind = scope.get("type")
        if kind not in (None, "", "posts"):
            continue
        if path and not (rel == path or rel.startswith(path + "/") or PurePosixPath(rel).match(path)):
            continue
        scoped.append((len(path), bool(kind), d["values"]))
    out: dict = {}
    for _, _, values in sorted(scoped, key=lambda x: (x[0], x[1])):
        out.update(values)
    return out


def jekyll_is_candidate(site: Site, rel: str) -> bool:
    """Whether Jekyll would read this file as a post or draft at all (in a `_posts/` or `_drafts/` folder)."""
    parts = PurePosixPath(rel).parts
    excluded = {str(x).strip("/") for x in site.config.get("exclude") or []}
    if any(p in JEKYLL_SKIP_DIRS for p in parts[:-1]):
        return False
    if any(rel == e or rel.startswith(e + "/") for e in excluded if e):
        return False
    return "_posts" in parts[:-1] or "_drafts" in parts[:-1]


def jekyll_post(site: Site, rel: str, meta: dict, now: dt.datetime | None = None) -> SitePost:
    """Date, categories and URL of the file at `rel` (relative to the site root), or why it is left out."""
    parts = PurePosixPath(rel).parts
    if "_drafts" in parts[:-1]:
        return SitePost(excluded="draft (in _drafts/)")
    meta = {**_jekyll_defaults(site.config, rel), **meta}
    stem = PurePosixPath(rel).stem
    m = _POST_NAME.match(stem)
    if not m:
        return SitePost(excluded="not a post file name (Jekyll reads only _posts/YYYY-MM-DD-title.ext)")
    if meta.get("published") is False:
        return SitePost(excluded="published: false")
    target = meta.get("redirect_to")
    if target:
        return SitePost(redirect=str(target[0] if isinstance(target, list) and target else target))
    tz = site.timezone
    try:
        file_day = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return SitePost(excluded=f"invalid date in the file name: {stem[:10]!r}")
    slug = str(meta.get("slug") or m.group(4))
    date: dt.date | dt.datetime = file_day
    warnings = []
    if meta.get("date") is not None:
        parsed = parse_site_date(meta["date"], tz)
        if parsed is not None:
            date = parsed
        else:
            warnings.append(f"date: {meta['date']!r} is not a date; the file name's date is used")
    when = date if isinstance(date, dt.datetime) else dt.datetime(date.year, date.month, date.day, tzinfo=tz)
    now = now or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is None:  # no zone anywhere: compare as wall-clock times
        now = now.replace(tzinfo=None)
    if not site.config.get("future") and when > now:
        return SitePost(excluded=f"dated in the future ({_iso(date)}); Jekyll publishes it only with future: true")
    idx = parts.index("_posts")
    categories = _dedupe(list(parts[:idx]) + _as_list(meta.get("category")) + _as_list(meta.get("categories")))
    own = meta.get("permalink")
    if own:
        template = str(own)
    else:
        coll = (site.config.get("collections") or {}).get("posts") if isinstance(
            site.config.get("collections"), dict) else None
        template = jekyll_template((coll or {}).get("permalink") if isinstance(coll, dict) else None) \
            if isinstance(coll, dict) and coll.get("permalink") else jekyll_template(site.config.get("permalink"))
    path = jekyll_path(template, date, slug, categories)
    return SitePost(date=_iso(date), url=site.base_url + path, categories=categories, slug=slug, warnings=warnings)


# ---------------------------------------------------------------- Hugo

HUGO_CONTENT_SKIP = {"_index"}


def hugo_is_candidate(site: Site, rel: str) -> bool:
    content = str(site.config.get("contentDir") or "content").strip("/")
    parts = PurePosixPath(rel).parts
    return rel.startswith(content + "/") and PurePosixPath(rel).stem not in HUGO_CONTENT_SKIP \
        and not any(p.startswith("_") for p in parts[:-1])


def _hugo_permalinks(config: dict) -> dict[str, str]:
    raw = config.get("permalinks") or {}
    if not isinstance(raw, dict):
        return {}
    page = raw.get("page")
    if isinstance(page, dict):  # Hugo >= 0.112: [permalinks.page]
        raw = {**{k: v for k, v in raw.items() if not isinstance(v, dict)}, **page}
    return {str(k).strip("/"): str(v) for k, v in raw.items() if isinstance(v, str)}


def hugo_path(pattern: str, date: dt.date | None, title: str, slug: str | None, filename: str,
              sections: list[str]) -> str:
    """Fill a Hugo `[permalinks]` pattern."""
    d = date if date is not None else dt.date(1, 1, 1)
    values = {
        "year": f"{d.year:04d}", "month": f"{d.month:02d}", "monthname": d.strftime("%B").lower(),
        "day": f"{d.day:02d}", "weekday": str(d.isoweekday() % 7), "weekdayname": d.strftime("%A").lower(),
        "yearday": str(d.timetuple().tm_yday), "section": sections[0] if sections else "",
        "sections": "/".join(sections), "title": urlize(title), "slug": urlize(slug or title),
        "slugorfilename": slug or filename, "slugorcontentbasename": slug or filename,
        "filename": filename, "contentbasename": filename,
    }
    out = pattern
    for key in sorted(values, key=len, reverse=True):
        out = out.replace(":" + key, values[key])
    return re.sub(r"/{2,}", "/", "/" + out.lstrip("/"))


def hugo_post(site: Site, rel: str, meta: dict) -> SitePost:
    if meta.get("draft") is True:
        return SitePost(excluded="draft: true")
    if meta.get("redirect_to"):
        return SitePost(redirect=str(meta["redirect_to"]))
    content = str(site.config.get("contentDir") or "content").strip("/")
    inner = PurePosixPath(rel[len(content) + 1:])
    bundle = inner.stem == "index"
    filename = inner.parent.name if bundle else inner.stem
    sections = list(inner.parent.parts[:-1] if bundle else inner.parent.parts)
    date = None
    warnings = []
    for key in ("date", "publishDate", "pubdate", "published"):
        if meta.get(key) is not None:
            date = parse_site_date(meta[key], site.timezone)
            if date is not None:
                break
            warnings.append(f"{key}: {meta[key]!r} is not a date; field dropped")
    title = str(meta.get("title") or filename)
    slug = str(meta["slug"]) if meta.get("slug") else None
    if meta.get("url"):
        path = "/" + str(meta["url"]).lstrip("/")
    else:
        patterns = _hugo_permalinks(site.config)
        pattern = patterns.get("/".join(sections)) or (patterns.get(sections[0]) if sections else None)
        if pattern:
            path = hugo_path(pattern, date, title, slug, filename, sections)
        else:
            path = "/" + "/".join(sections + [slug or filename]) + "/"
            path = re.sub(r"/{2,}", "/", path)
        if site.config.get("uglyURLs") is True and path.endswith("/") and path != "/":
            path = path.rstrip("/") + ".html"
        if not site.config.get("disablePathToLower"):
            path = path.lower()
    return SitePost(date=_iso(date) if date is not None else None, url=site.base_url + escape_path(path),
                    categories=_as_list(meta.get("categories")), slug=slug or filename, warnings=warnings)


# ---------------------------------------------------------------- entry points

def is_candidate(site: Site, rel: str) -> bool:
    """Whether the generator reads the file at `rel` as a post (or draft) at all; pages are not posts."""
    return jekyll_is_candidate(site, rel) if site.kind == "jekyll" else hugo_is_candidate(site, rel)


def site_post(site: Site, rel: str, meta: dict, body: str = "", now: dt.datetime | None = None) -> SitePost:
    """The generator's view of one candidate file (see `is_candidate`)."""
    sp = jekyll_post(site, rel, meta, now) if site.kind == "jekyll" else hugo_post(site, rel, meta)
    if sp.excluded is None and sp.redirect is None and meta.get("redirect_from") and not strip_markup(
            body, site.kind).strip():
        sp = SitePost(redirect=f"(stub listing redirect_from, no text) {sp.url or ''}".strip())
    return sp


# ---------------------------------------------------------------- text as a reader sees it

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_IAL = re.compile(r"^[ \t]*\{:[^}\n]*\}[ \t]*$\n?|\{:[^}\n]*\}", re.M)
_LIQUID_COMMENT = re.compile(r"\{%-?\s*comment\s*-?%\}.*?\{%-?\s*endcomment\s*-?%\}", re.S)
_LIQUID_RAW = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\}", re.S)
_LIQUID_CAPTURE = re.compile(r"\{%-?\s*capture\b.*?%\}.*?\{%-?\s*endcapture\s*-?%\}", re.S)
_LIQUID_TAG = re.compile(r"\{%.*?%\}", re.S)
_LIQUID_OUT = re.compile(r"\{\{.*?\}\}", re.S)
_HUGO_COMMENT = re.compile(r"\{\{<\s*/\*.*?\*/\s*>\}\}|\{\{%\s*/\*.*?\*/\s*%\}\}", re.S)
_HUGO_SHORTCODE = re.compile(r"\{\{[<%].*?[%>]\}\}", re.S)
# What is left of a line whose Liquid/shortcode output was removed: a list bullet, brackets, a label.
_HOLLOW = re.compile(r"^[ \t]*(?:[*+-]|\d+\.)?[ \t]*[<>\[\]()]*[ \t]*(?:[\w .-]{0,20}:)?[ \t]*[<>\[\]()]*[ \t]*$")
_GONE = "\x01"
_BLANKS = re.compile(r"\n{3,}")


def strip_markup(body: str, kind: str | None) -> str:
    """The body without what the generator consumes: HTML comments and kramdown attribute lists
    (outside code blocks); Liquid tags and output for Jekyll (`{% raw %}` content kept), shortcodes
    for Hugo (a paired shortcode's inner text kept), everywhere, as the generators do. A line
    left hollow by the removal (`* <{{ release.url }}>`, `SIZE: {{ size }}`) goes too."""
    raws: list[str] = []
    if kind == "jekyll":
        def keep_raw(m: re.Match) -> str:
            raws.append(m.group(1))
            return f"\x00{len(raws) - 1}\x00"

        body = _LIQUID_RAW.sub(keep_raw, body)
        body = _LIQUID_COMMENT.sub(_GONE, body)
        body = _LIQUID_CAPTURE.sub(_GONE, body)
        body = _LIQUID_TAG.sub(_GONE, body)
        body = _LIQUID_OUT.sub(_GONE, body)
    elif kind == "hugo":
        body = _HUGO_COMMENT.sub(_GONE, body)
        body = _HUGO_SHORTCODE.sub(_GONE, body)
    if _GONE in body:
        lines = [ln for ln in body.split("\n") if not (_GONE in ln and _HOLLOW.match(ln.replace(_GONE, "")))]
        body = "\n".join(lines).replace(_GONE, "")
    body = outside_fences(body, lambda t: _IAL.sub("", _HTML_COMMENT.sub("", t)))
    if raws:
        body = re.sub(r"\x00(\d+)\x00", lambda m: raws[int(m.group(1))], body)
    return _BLANKS.sub("\n\n", body)
