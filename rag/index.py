"""The on-disk index: SQLite (posts, chunks, vectors), FAISS (vectors), BM25 (sparse matrix).

Layout of an index directory:

    CURRENT          name of the live generation (replaced atomically with os.replace)
    gen-<stamp>/     meta.sqlite, vectors.faiss, bm25_{indptr,indices,data,tf,lengths,idf,ids}.npy,
                     bm25_vocab.json
    .lock            held (flock) by the one writer
    readers/         one lease file per open reader: `<generation>@<host>@<pid>@<random>`; clean-up
                     keeps every generation a live lease names

A writer builds a complete new generation beside the live one and only then switches CURRENT,
so a killed ingest leaves the previous index untouched; readers never see a half-written one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sqlite3
import threading
import time
import urllib.parse
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .keyword import BM25Index

SCHEMA_VERSION = 2  # 2: BM25 only as .npy postings (the bm25.npz layout of 1 is no longer read)

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS posts (
    post_id TEXT PRIMARY KEY, path TEXT NOT NULL, title TEXT NOT NULL, date TEXT,
    categories TEXT NOT NULL, tags TEXT NOT NULL, author TEXT, excerpt TEXT, url TEXT,
    content_hash TEXT NOT NULL, warnings TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, chunk_id TEXT NOT NULL UNIQUE, post_id TEXT NOT NULL REFERENCES posts(post_id),
    ord INTEGER NOT NULL, text TEXT NOT NULL, embed_text TEXT NOT NULL, n_tokens INTEGER NOT NULL,
    embed_hash TEXT NOT NULL, keyword_tokens TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_post ON chunks(post_id);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(embed_hash);
CREATE INDEX IF NOT EXISTS posts_date ON posts(date);
"""


EXACT_MAX = 50_000         # up to this many vectors: exact inner product (IndexFlatIP); exact
                           # search over 100k took 14.5 ms of a 50 ms budget (eval/bench_retrieval.py)
TARGET_RECALL = 0.98       # above it: IVF with fp16 codes, nprobe tuned until recall@10 >= this


def _ivf_nlist(n: int) -> int:
    return int(min(65536, max(256, 4 * round(n ** 0.5))))


def build_vector_index(vectors: np.ndarray, ids: np.ndarray, exact_max: int = EXACT_MAX):
    """Exact index for small archives; IVF + fp16 scalar quantizer (half the memory) for large ones."""
    import faiss

    n, dim = vectors.shape
    if n <= exact_max:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(vectors, ids)
        return index
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, _ivf_nlist(n), faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    train = vectors[rng.choice(n, size=min(n, 40 * _ivf_nlist(n)), replace=False)]
    index.train(train)
    index.add_with_ids(vectors, ids)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct() and remove_ids() by chunk id
    tune_nprobe(index, vectors, ids)
    return index


# Proxy queries for tuning: sampled chunk vectors plus Gaussian noise of this norm (cosine ~0.71 to
# their chunk). Calibrated at 1M chunks so that the proxies' recall@10 tracks real JaQuAD questions'
# (nprobe 64/128/256/512: proxies 0.875/0.930/0.968/0.989, questions 0.877/0.932/0.969/0.993);
# near-copies (noise norm 0.4) overstated recall by up to 0.09 there.
PROBE_NOISE_NORM = 0.98


def tune_nprobe(index, vectors: np.ndarray, ids: np.ndarray, n_queries: int = 200, k: int = 10) -> float:
    """Smallest nprobe whose recall@10 against exact search reaches TARGET_RECALL; returns that recall."""
    import faiss

    rng = np.random.default_rng(1)
    rows = rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False)
    sample = vectors[rows]
    noise = rng.normal(0, PROBE_NOISE_NORM / np.sqrt(vectors.shape[1]), sample.shape).astype(np.float32)
    q = sample + noise
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, pos = exact.search(q, k)
    truth = ids[pos]  # the IVF index answers with chunk ids, exact search with row positions
    recall = 0.0
    steps = [p for p in (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192) if p < index.nlist]
    for nprobe in steps + [index.nlist]:  # all lists = exhaustive over fp16 codes: the target is reachable
        index.nprobe = nprobe
        _, got = index.search(q, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, got)]))
        if recall >= TARGET_RECALL:
            break
    return recall


FILTER_EXACT_MAX = 20_000  # filtered IVF searches over at most this many ids are exact (~30 MB decoded)


def search_vectors(index, qv: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) for one query, optionally only among `allowed` ids.

    IVF lists are clustered for unfiltered queries: under a narrow filter the nearest allowed
    vectors often sit in lists nobody probes. So a filter of up to FILTER_EXACT_MAX ids is searched
    exactly over those vectors (decoded from the index); a wider one widens nprobe (x4, up to every
    list) until k results, or all the allowed ones, come back.
    """
    import faiss

    if allowed is None:
        d, i = index.search(qv, k)
        return d[0], i[0]
    k = min(k, int(allowed.size))
    if k == 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    sel = faiss.IDSelectorBatch(allowed)
    if not isinstance(index, faiss.IndexIVF):
        d, i = index.search(qv, k, params=faiss.SearchParameters(sel=sel))
        return d[0], i[0]
    if allowed.size <= FILTER_EXACT_MAX:
        vecs = index.reconstruct_batch(allowed.astype(np.int64))
        scores = vecs @ qv[0]
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top].astype(np.float32), allowed[top].astype(np.int64)
    nprobe = index.nprobe
    while True:
        d, i = index.search(qv, k, params=faiss.SearchParametersIVF(sel=sel, nprobe=nprobe))
        if int((i[0] >= 0).sum()) >= k or nprobe >= index.nlist:
            return d[0], i[0]
        nprobe = min(index.nlist, nprobe * 4)


def stored_vectors(conn: sqlite3.Connection, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids, vectors) of all n stored chunks in id order, filled in place: no list of blobs."""
    ids = np.empty(n, dtype=np.int64)
    vecs = np.empty((n, dim), dtype=np.float32)
    for j, (cid, blob) in enumerate(conn.execute("SELECT id, vector FROM chunks ORDER BY id")):
        ids[j] = cid
        vecs[j] = np.frombuffer(blob, dtype=np.float32)
    return ids, vecs


class UnusableIndex(Exception):
    """An index that cannot be used as asked (missing, built with another embedder or layout, busy)."""



class IndexBusy(UnusableIndex):
    pass


def current_generation(index_dir: Path) -> Path | None:
    try:
        name = (index_dir / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
    gen = index_dir / name
    return gen if (gen / "meta.sqlite").exists() else None


LEASE_DIR = "readers"
LEASE_TTL_S = 600.0  # a lease written on another host counts while its file was touched this recently


class ReaderLease:
    """A file saying "a reader in this process has generation G open": clean-up never removes G while
    the process lives (same host) or, for a reader on another host, while the lease is refreshed."""

    def __init__(self, index_dir: Path, gen_name: str):
        d = Path(index_dir) / LEASE_DIR
        d.mkdir(exist_ok=True)
        self.gen_name = gen_name
        self.path = d / f"{gen_name}@{socket.gethostname()}@{os.getpid()}@{uuid.uuid4().hex[:8]}"
        self.path.touch()

    def refresh(self) -> None:
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.path.touch()

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def _lease_alive(path: Path, host: str, pid: str) -> bool:
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, OverflowError):
            return True
        return True
    try:
        return time.time() - path.stat().st_mtime < LEASE_TTL_S
    except FileNotFoundError:
        return False


def leased_generations(index_dir: Path) -> set[str]:
    """Names of generations that a live reader holds; stale leases (dead processes) are removed."""
    d = Path(index_dir) / LEASE_DIR
    out: set[str] = set()
    for p in d.iterdir() if d.is_dir() else ():
        parts = p.name.split("@")
        if len(parts) != 4:
            continue
        if _lease_alive(p, parts[1], parts[2]):
            out.add(parts[0])
        else:
            p.unlink(missing_ok=True)
    return out


class WriterLock:
    """Exclusive flock on `<index>/.lock`: one ingest at a time; others wait `timeout` s, then fail clearly."""

    def __init__(self, index_dir: Path, timeout: float = 0.0):
        self.path = index_dir / ".lock"
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> "WriterLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise IndexBusy(f"another ingest (pid {holder}) is writing the index at {self.path.parent}; "
                                    f"try again when it has finished") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        # percent-encoded: a '#' or '?' in the index path must not end the file name
        uri = f"file:{urllib.parse.quote(str(Path(path).resolve()))}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path)
        conn.executescript(SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(path)


@dataclass
class NewChunk:
    chunk_id: str
    post_id: str
    ord: int
    text: str
    embed_text: str
    n_tokens: int
    embed_hash: str
    keyword_tokens: list[str]
    vector: np.ndarray


class GenerationWriter:
    """Builds the next generation as a copy of the live one plus changes, then publishes it."""

    def __init__(self, index_dir: Path, info: dict[str, str], start_empty: bool = False):
        self.index_dir = index_dir
        index_dir.mkdir(parents=True, exist_ok=True)
        self.live = current_generation(index_dir)
        self.prev = None if start_empty else self.live
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.gen = index_dir / f"gen-{stamp}-{uuid.uuid4().hex[:8]}"
        self.gen.mkdir()
        self.conn = None
        self.timings: dict[str, float] = {}
        self.bm25_updated = False  # True when publish updated the previous BM25 instead of rebuilding it
        try:
            self._start(info)
        except BaseException:  # disk full during the copy: leave no half-made generation behind
            self.abort()
            raise

    def _start(self, info: dict[str, str]) -> None:
        db = self.gen / "meta.sqlite"
        t = time.perf_counter()
        if self.prev is not None:
            src = sqlite3.connect(self.prev / "meta.sqlite")
            dst = sqlite3.connect(db)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        self.timings["copy_s"] = time.perf_counter() - t
        self.conn = connect(db)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")  # durability comes from fsync before publishing
        self.conn.execute("BEGIN")
        for k, v in info.items():
            self.conn.execute("INSERT OR REPLACE INTO info(key, value) VALUES (?, ?)", (k, v))
        self.removed_ids: list[int] = []
        self.added: list[tuple[int, np.ndarray]] = []

    def next_id(self) -> int:
        row = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM chunks").fetchone()
        return int(row[0]) + 1

    def delete_post(self, post_id: str) -> None:
        ids = [r[0] for r in self.conn.execute("SELECT id FROM chunks WHERE post_id=?", (post_id,))]
        self.removed_ids.extend(ids)
        self.conn.execute("DELETE FROM chunks WHERE post_id=?", (post_id,))
        self.conn.execute("DELETE FROM posts WHERE post_id=?", (post_id,))

    def put_post(self, post, chunks: Sequence[NewChunk]) -> None:
        self.delete_post(post.post_id)
        self.conn.execute(
            "INSERT INTO posts(post_id, path, title, date, categories, tags, author, excerpt, url, content_hash,"
            " warnings) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (post.post_id, post.path, post.title, post.date, json.dumps(post.categories, ensure_ascii=False),
             json.dumps(post.tags, ensure_ascii=False), post.author, post.excerpt, post.url, post.content_hash,
             json.dumps(post.warnings, ensure_ascii=False)))
        nid = self.next_id()
        for i, c in enumerate(chunks):
            vec = np.ascontiguousarray(c.vector, dtype=np.float32)
            self.conn.execute(
                "INSERT INTO chunks(id, chunk_id, post_id, ord, text, embed_text, n_tokens, embed_hash,"
                " keyword_tokens, vector) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (nid + i, c.chunk_id, c.post_id, c.ord, c.text, c.embed_text, c.n_tokens, c.embed_hash,
                 "\x1f".join(c.keyword_tokens), vec.tobytes()))
            if self.prev is not None:  # a fresh build reads vectors back from SQLite instead
                self.added.append((nid + i, vec))

    def publish(self, dim: int) -> Path:
        """Write FAISS and BM25 for the new state, fsync everything, then switch CURRENT."""
        import faiss

        t = time.perf_counter()
        self.conn.commit()
        n_after = self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        vindex = None
        if self.prev is not None and (self.prev / "vectors.faiss").exists():
            vindex = faiss.read_index(str(self.prev / "vectors.faiss"))
            is_exact = not isinstance(vindex, faiss.IndexIVF)
            if is_exact != (n_after <= EXACT_MAX):
                vindex = None  # crossed the size threshold: rebuild with the other kind
        if vindex is None:
            ids_all, vecs_all = stored_vectors(self.conn, n_after, dim)
            vindex = build_vector_index(vecs_all, ids_all)
            del vecs_all
        else:
            if self.removed_ids:
                vindex.remove_ids(np.asarray(self.removed_ids, dtype=np.int64))
            if self.added:
                ids = np.asarray([i for i, _ in self.added], dtype=np.int64)
                vecs = np.vstack([v for _, v in self.added]).astype(np.float32)
                vindex.add_with_ids(vecs, ids)
        faiss.write_index(vindex, str(self.gen / "vectors.faiss"))
        self.timings["vectors_s"] = time.perf_counter() - t

        t = time.perf_counter()
        ids = self._publish_bm25(n_after)
        self.timings["bm25_s"] = time.perf_counter() - t
        t = time.perf_counter()
        n_vec = vindex.ntotal
        if n_vec != len(ids):
            raise UnusableIndex(f"internal error: {n_vec} vectors but {len(ids)} chunks; nothing was published")
        self.conn.execute("VACUUM") if len(ids) < 200_000 else None
        self.conn.close()
        _fsync_tree(self.gen)
        tmp = self.index_dir / f"CURRENT.{os.getpid()}.tmp"
        tmp.write_text(self.gen.name)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.index_dir / "CURRENT")
        _fsync_dir(self.index_dir)
        self._collect_garbage()
        self.timings["sync_s"] = time.perf_counter() - t
        return self.gen

    def _publish_bm25(self, n_after: int) -> np.ndarray:
        """Write BM25 for the new state; returns the chunk id of each row.

        With a previous generation, its postings are updated (rows dropped, new chunks' tokens
        counted): at 1M chunks a full rebuild from every stored token took 160 s of a one-post
        ingest. New chunks always get ids above every kept one, so they are the last rows.
        """
        def split(toks: str) -> list[str]:
            return toks.split("\x1f") if toks else []

        bm25 = None
        if self.prev is not None and (self.prev / "bm25_tf.npy").exists():
            old = BM25Index.load(self.prev)
            old_ids = np.load(self.prev / "bm25_ids.npy")
            keep = ~np.isin(old_ids, np.asarray(self.removed_ids, dtype=np.int64))
            kept_ids = old_ids[keep]
            after = int(kept_ids[-1]) if kept_ids.size else 0
            new_ids: list[int] = []

            def new_tokens():
                for cid, toks in self.conn.execute("SELECT id, keyword_tokens FROM chunks WHERE id > ? ORDER BY id",
                                                   (after,)):
                    new_ids.append(cid)
                    yield split(toks)

            bm25 = old.updated(keep, new_tokens())
            ids = np.concatenate([kept_ids, np.asarray(new_ids, dtype=np.int64)])
            stored = np.fromiter((r[0] for r in self.conn.execute("SELECT id FROM chunks ORDER BY id")),
                                 dtype=np.int64, count=n_after)
            if not np.array_equal(ids, stored):
                bm25 = None  # rows would not line up with chunk ids: rebuild instead
        self.bm25_updated = bm25 is not None
        if bm25 is None:
            ids = np.empty(n_after, dtype=np.int64)

            def all_tokens():
                for j, (cid, toks) in enumerate(self.conn.execute("SELECT id, keyword_tokens FROM chunks ORDER BY id")):
                    ids[j] = cid
                    yield split(toks)

            bm25 = BM25Index.build(all_tokens())
        bm25.save(self.gen)
        np.save(self.gen / "bm25_ids.npy", ids)
        return ids

    def abort(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
        finally:
            shutil.rmtree(self.gen, ignore_errors=True)

    def _collect_garbage(self) -> None:
        """Keep the new and the previous generation (a reader may still be opening it) and every
        generation a live reader holds a lease on; drop the rest."""
        keep = {self.gen.name, self.live.name if self.live else ""} | leased_generations(self.index_dir)
        for p in self.index_dir.iterdir():
            if p.is_dir() and p.name.startswith("gen-") and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
            elif p.name.startswith("CURRENT.") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)


class IndexReader:
    """A loaded, read-only generation: SQLite for text and metadata, FAISS and BM25 for ranking."""

    def __init__(self, index_dir: Path):
        import faiss

        self.index_dir = Path(index_dir)
        self.lease: ReaderLease | None = None
        for attempt in range(3):
            gen = current_generation(self.index_dir)
            if gen is None:
                raise UnusableIndex(f"no index at {self.index_dir}: run `rag ingest PATH --index {self.index_dir}` "
                                    f"first")
            try:  # the lease comes first: from then on clean-up leaves this generation alone
                self.lease = ReaderLease(self.index_dir, gen.name)
            except OSError:
                self.lease = None  # a read-only index directory: nobody cleans it up either
            try:
                self._open(gen, faiss)
                break
            except BaseException as exc:
                if self.lease is not None:
                    self.lease.release()
                # removed before the lease was seen: read CURRENT again
                if attempt == 2 or not isinstance(exc, (OSError, RuntimeError, sqlite3.Error)):
                    raise
        # the lease lasts as long as this object (also when nobody calls close())
        self._finalizer = weakref.finalize(self, self.lease.release) if self.lease else None

    def _open(self, gen: Path, faiss) -> None:
        self.gen = gen
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self.info = {r["key"]: r["value"] for r in self.conn.execute("SELECT key, value FROM info")}
        version = self.info.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise UnusableIndex(f"the index at {self.index_dir} has layout version {version}, this version reads "
                                f"{SCHEMA_VERSION}: run `rag ingest PATH --index {self.index_dir} --rebuild`")
        self.vectors = faiss.read_index(str(gen / "vectors.faiss"))
        self.bm25 = BM25Index.load(gen)
        self.bm25_ids = np.load(gen / "bm25_ids.npy")

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's read-only connection: the web app's threads each get their own."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.gen / "meta.sqlite", readonly=True)
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @property
    def embedder_name(self) -> str:
        return self.info.get("embedder", "?")

    @property
    def n_chunks(self) -> int:
        return int(self.bm25_ids.size)

    def post_field_contains(self, text: str) -> bool:
        """Some post's author, tags or categories hold `text` (case-folded)."""
        row = self.conn.execute("SELECT 1 FROM posts WHERE instr(lower(coalesce(author, '')), ?) OR "
                                "instr(lower(tags), ?) OR instr(lower(categories), ?) LIMIT 1",
                                (text, text, text)).fetchone()
        return row is not None

    def chunk_rows(self, ids: Iterable[int]) -> dict[int, sqlite3.Row]:
        ids = list(ids)
        if not ids:
            return {}
        q = ("SELECT c.id, c.chunk_id, c.post_id, c.ord, c.text, p.title, p.date, p.url, p.tags, p.categories"
             " FROM chunks c JOIN posts p ON p.post_id = c.post_id WHERE c.id IN (%s)" % ",".join("?" * len(ids)))
        return {r["id"]: r for r in self.conn.execute(q, ids)}

    def filtered_ids(self, tags: Sequence[str] = (), categories: Sequence[str] = (),
                     since: str | None = None, until: str | None = None) -> np.ndarray | None:
        """Chunk ids passing the filters, or None when no filter is set."""
        if not (tags or categories or since or until):
            return None
        where, args = [], []
        for t in tags:
            where.append("EXISTS (SELECT 1 FROM json_each(p.tags) WHERE lower(value) = lower(?))")
            args.append(t)
        for c in categories:
            where.append("EXISTS (SELECT 1 FROM json_each(p.categories) WHERE lower(value) = lower(?))")
            args.append(c)
        if since:
            where.append("p.date IS NOT NULL AND substr(p.date, 1, 10) >= ?")
            args.append(since)
        if until:
            where.append("p.date IS NOT NULL AND substr(p.date, 1, 10) <= ?")
            args.append(until)
        q = "SELECT c.id FROM chunks c JOIN posts p ON p.post_id = c.post_id WHERE " + " AND ".join(where)
        return np.asarray([r[0] for r in self.conn.execute(q, args)], dtype=np.int64)

    def post(self, post_id: str) -> dict | None:
        r = self.conn.execute("SELECT * FROM posts WHERE post_id=?", (post_id,)).fetchone()
        if r is None:
            return None
        chunks = [{"chunk_id": c["chunk_id"], "text": c["text"]} for c in self.conn.execute(
            "SELECT chunk_id, text FROM chunks WHERE post_id=? ORDER BY ord", (post_id,))]
        return {"post_id": r["post_id"], "title": r["title"], "date": r["date"], "tags": json.loads(r["tags"]),
                "categories": json.loads(r["categories"]), "url": r["url"], "author": r["author"],
                "excerpt": r["excerpt"], "path": r["path"], "warnings": json.loads(r["warnings"]),
                "chunks": chunks}

    def facets(self) -> tuple[list[str], list[str]]:
        """All tags and all categories of the indexed posts, each sorted case-insensitively."""
        tags: set[str] = set()
        cats: set[str] = set()
        for r in self.conn.execute("SELECT tags, categories FROM posts"):
            tags.update(json.loads(r[0] or "[]"))
            cats.update(json.loads(r[1] or "[]"))
        return sorted(tags, key=str.lower), sorted(cats, key=str.lower)

    def recent_posts(self, limit: int = 12) -> list[dict]:
        """The newest dated posts (post_id, title, date, url), newest first."""
        rows = self.conn.execute("SELECT post_id, title, date, url FROM posts WHERE date IS NOT NULL AND title != ''"
                                 " ORDER BY substr(date, 1, 10) DESC, post_id LIMIT ?", (int(limit),))
        return [dict(r) for r in rows]

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()
        if self._finalizer is not None:
            self._finalizer()
