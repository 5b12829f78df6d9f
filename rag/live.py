"""Live serving: answer from the newest published index generation without a restart.

`LiveAssistant` stands in for an `Assistant` in `rag serve`. A watcher thread reads `CURRENT`
every `reload_poll_s` seconds; when it names a new generation, the generation is opened (under a
reader lease, rag.index.ReaderLease) and becomes the one new questions use. A question pins the
generation it started on until it has finished, so every search, the evidence check and the
extractive answer of one question see one index; the old generation is closed (its lease
released, so clean-up may remove it) once its last question is done.

`SiteWatcher` is `rag serve --watch PATH`: it polls PATH for changed posts and config files and,
once they have been quiet for `watch_debounce_s`, runs one ingest at a time in its own thread,
logging progress and errors; the `LiveAssistant` then picks up what it published.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import Settings
from .index import IndexBusy, IndexReader, current_generation

log = logging.getLogger("rag.live")


class _Generation:
    def __init__(self, assistant: Any, reader: IndexReader):
        self.assistant = assistant
        self.reader = reader
        self.name = reader.gen.name
        self.users = 0
        self.retired = False

    def close(self) -> None:
        try:
            executor = getattr(self.assistant.retriever, "_executor", None)
            if executor is not None:
                executor.shutdown(wait=False)
            self.reader.close()
        except Exception:
            log.exception("closing generation %s failed", self.name)


class _LiveRetriever:
    """The retriever of whichever generation is live when `search` is called."""

    def __init__(self, live: "LiveAssistant"):
        self._live = live

    def search(self, *args: Any, **kwargs: Any) -> Any:
        with self._live.pinned() as assistant:
            return assistant.retriever.search(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # reader, embedder, warm_up, ...
        return getattr(self._live._current.assistant.retriever, name)


class _Worker:
    """A daemon thread that polls until `stop()` (the reloader and the site watcher)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self, target: Callable, name: str, *args: Any) -> None:
        self._thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class LiveAssistant(_Worker):
    """An Assistant that follows the index's live generation (see module docstring).

    `first` answers from the generation that is live now; `make(reader)` builds the Assistant for a
    newly opened one (sharing the embedder and chat client, so a switch costs only opening the
    index files)."""

    def __init__(self, first: Any, make: Callable[[IndexReader], Any], poll_s: float | None = None):
        super().__init__()
        self.settings = first.settings
        self.index_dir = Path(first.retriever.reader.index_dir)
        self._make = make
        self.poll_s = self.settings.reload_poll_s if poll_s is None else poll_s
        self._lock = threading.Lock()
        self._current = _Generation(first, first.retriever.reader)
        self._retriever = _LiveRetriever(self)
        self.switches: list[dict] = []  # {"generation", "seconds", "at"} per switch (logged too)

    # ------------------------------------------------------------ the Assistant interface
    @property
    def generation(self) -> str:
        return self._current.name

    @property
    def retriever(self) -> Any:
        """Searches the live generation (the editors' timeline holds this across switches)."""
        return self._retriever

    @property
    def model_label(self) -> str:
        return self._current.assistant.model_label

    @contextmanager
    def pinned(self) -> Iterator[Any]:
        """The current generation's Assistant, kept open until the block ends."""
        with self._lock:
            gen = self._current
            gen.users += 1
        try:
            yield gen.assistant
        finally:
            with self._lock:
                gen.users -= 1
                done = gen.retired and gen.users == 0
            if done:
                gen.close()

    def ask(self, *args: Any, **kwargs: Any) -> Any:
        with self.pinned() as assistant:
            return assistant.ask(*args, **kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, object]]:
        with self.pinned() as assistant:
            yield from assistant.stream(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # settings, prompts, client, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._current.assistant, name)

    # ------------------------------------------------------------ following CURRENT
    def check(self) -> bool:
        """Switch to the live generation if CURRENT names a new one; True when it switched."""
        t0 = time.perf_counter()
        gen = current_generation(self.index_dir)
        if gen is None or gen.name == self._current.name:
            return False
        reader = IndexReader(self.index_dir)
        if reader.gen.name == self._current.name:
            reader.close()
            return False
        new = _Generation(self._make(reader), reader)
        with self._lock:
            old, self._current = self._current, new
            old.retired = True
            idle = old.users == 0
        if idle:
            old.close()
        seconds = time.perf_counter() - t0
        self.switches.append({"generation": new.name, "seconds": seconds, "at": time.time()})
        log.info("serving index generation %s (%d chunks; opened in %.2f s)%s", new.name, reader.n_chunks,
                    seconds, "" if idle else f"; {old.users} question(s) finish on {old.name}")
        return True

    def _run(self) -> None:
        failed_at = 0.0
        while not self._stop.wait(self.poll_s):
            try:
                lease = self._current.reader.lease
                if lease is not None:
                    lease.refresh()
                if time.monotonic() - failed_at > 10 * self.poll_s:
                    self.check()
            except Exception:
                failed_at = time.monotonic()
                log.exception("could not switch to the new index generation; still serving %s", self.generation)

    def start(self) -> "LiveAssistant":
        if self._thread is None:
            self._spawn(self._run, "rag-reload")
        return self


# ---------------------------------------------------------------- rag serve --watch

def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of every post and site config file under root: what an ingest would read."""
    from .corpus import iter_post_files
    from .sites import HUGO_CONFIGS, JEKYLL_CONFIGS

    state: dict[str, tuple[int, int]] = {}
    paths = [p for p, problem in iter_post_files(root) if not problem]
    paths += [root / n for n in JEKYLL_CONFIGS + HUGO_CONFIGS]
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        state[str(p)] = (st.st_mtime_ns, st.st_size)
    return state


class SiteWatcher(_Worker):
    """Re-ingests a posts folder or site when it changes: debounced, one ingest at a time, logged."""

    def __init__(self, root: Path, settings: Settings, ingest_fn: Callable[[], Any],
                 poll_s: float | None = None, debounce_s: float | None = None):
        super().__init__()
        self.root = Path(root)
        self.settings = settings
        self._ingest = ingest_fn
        self.poll_s = settings.watch_poll_s if poll_s is None else poll_s
        self.debounce_s = settings.watch_debounce_s if debounce_s is None else debounce_s
        self.runs = 0

    def run_ingest(self) -> bool:
        """One ingest, logged; False if it failed or another writer held the index."""
        t0 = time.perf_counter()
        try:
            rep = self._ingest()
        except IndexBusy as exc:
            log.warning("watch: %s; will retry", exc)
            return False
        except Exception:
            log.exception("watch: ingest of %s failed; the index is unchanged", self.root)
            return False
        self.runs += 1
        log.info("watch: ingested %s in %.1f s: %d added, %d updated, %d removed, %d unchanged, %d skipped, "
                    "%d not published, %d redirects", self.root, time.perf_counter() - t0, rep.posts_added,
                    rep.posts_updated, rep.posts_removed, rep.posts_unchanged, len(rep.skipped),
                    len(rep.excluded), len(rep.redirects))
        for sk in rep.skipped:
            log.warning("watch: skipped %s: %s", sk["path"], sk["error"])
        return True

    def _run(self, initial: bool) -> None:
        state = tree_state(self.root)
        dirty = initial  # edits made while the server was down
        changed_at = 0.0
        while True:
            if dirty and time.monotonic() - changed_at >= self.debounce_s:
                if self.run_ingest():
                    dirty = False
                else:
                    changed_at = time.monotonic()  # retry after another quiet period
            if self._stop.wait(self.poll_s):
                return
            try:
                now = tree_state(self.root)
            except Exception:
                log.exception("watch: cannot read %s", self.root)
                continue
            if now != state:
                n = len(set(now.items()) ^ set(state.items()))
                log.info("watch: %d change(s) under %s; ingesting after %.1f s without changes", n, self.root,
                            self.debounce_s)
                state = now
                dirty = True
                changed_at = time.monotonic()

    def start(self, initial: bool = True) -> "SiteWatcher":
        self._spawn(self._run, "rag-watch", initial)
        return self


def open_live_assistant(settings: Settings, client: Any = None) -> LiveAssistant:
    """A LiveAssistant whose generations share one query embedder and one chat client."""
    from .api import open_assistant
    from .generation import Assistant
    from .retrieval import Retriever

    first = open_assistant(settings, long_lived=True, client=client)

    def make(reader: IndexReader) -> Any:
        retriever = Retriever(reader, first.retriever.embedder, first.settings)
        return Assistant(first.settings, retriever, client=first.client, prompts=first.prompts)

    return LiveAssistant(first, make)


def log_to_stderr() -> None:
    """Progress and errors of reloads and watched ingests in the server's log."""
    logger = logging.getLogger("rag")
    if not logger.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        logger.addHandler(h)
        logger.setLevel(logging.INFO)
