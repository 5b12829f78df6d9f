"""Answers: retrieval -> (refusal | chat endpoint | extractive) -> renumbered, checked citations.

`Assistant` is the one API that the CLI, the web UI and the evaluation share:
`ask()` returns an `Answer`; `stream()` yields ("delta", text) events and finally ("answer", Answer).
Streamed text is renumbered on the fly, so what the reader sees while streaming is exactly the
final answer and its `[n]` match the source list.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Sequence

from . import extractive, metadata, refusal
from .citations import Renumberer, check_claims, groundedness
from .config import Settings
from .context import assemble, fetch_header, fetch_neighbours, front_matter
from .llm import ChatClient, LLMConfig, LLMError, redact_url
from .question import asked_count, asked_focus, is_followup, key_tokens, numbered_names
from .retrieval import Filters, Hit, Retriever
from .text import fold, has_cjk, is_english, unescape_markdown

log = logging.getLogger(__name__)


def default_prompts_dir() -> Path:
    """The templates shipped with the package (`rag/prompts` in an installed wheel, mapped from the
    repository's top-level `prompts/` by pyproject.toml), else the checkout's `prompts/`."""
    packaged = Path(str(resources.files("rag"))) / "prompts"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "prompts"


def check_question(question: str, limit: int) -> str:
    """The stripped question; ValueError with a message for the asker when it is empty or too long
    (a multi-MB question would be tokenized under the retrieval lock and sent to a paid endpoint)."""
    question = (question or "").strip()
    if not question:
        raise ValueError("the question is empty")
    if len(question) > limit:
        raise ValueError(f"the question is too long ({len(question):,} characters; the limit is {limit:,}, "
                         "RAG_MAX_QUESTION_CHARS)")
    return question


class Prompts:
    """Prompt templates read from `prompts/` (text files, not Python strings)."""

    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory else default_prompts_dir()

    def get(self, name: str) -> str:
        path = self.dir / f"{name}.txt"
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise FileNotFoundError(f"prompt template missing: {path}") from None

    def lang(self, name: str, english: bool) -> str:
        return self.get(f"{name}.{'en' if english else 'ja'}")


def _escape(text: str) -> str:
    """Sources are data: keep them from closing or opening the tags that delimit them."""
    return text.replace("<", "＜").replace(">", "＞")


@dataclass
class Answer:
    question: str
    standalone_question: str
    answer: str
    mode: str                      # "llm" | "extractive" | "refused" | "error"
    sources: list[dict]
    citations: list[dict]
    claims: list[dict] = field(default_factory=list)
    latency_ms: dict = field(default_factory=dict)
    error: str | None = None
    invalid_citations: list[int] = field(default_factory=list)
    # the refusal signals: {"dense", "coverage"} and what the checks found (absent_names, missing_count, ...)
    evidence: dict = field(default_factory=dict)
    # Model answers only (mode "llm"): "yes" | "partly" | "no" from the claim check; None otherwise.
    grounded: str | None = None
    notice: str | None = None              # what the reader is told first when grounded is not "yes"
    fallback_answer: str | None = None     # grounded "no": labelled extractive answer, [n] as in `sources`
    model_answer: str | None = None        # policy "replace": the model's answer that was replaced
    model_heading: str | None = None       # heading shown above the model's answer when grounded is "no"
    refusal: str | None = None     # "off_archive" | "not_stated" when mode is "refused"
    answered_from: str = "text"    # "text" | "metadata" (front matter and the index)

    def as_json(self) -> dict:
        out = {"question": self.question, "answer": self.answer, "mode": self.mode, "citations": self.citations,
               "sources": self.sources, "latency_ms": self.latency_ms,
               "standalone_question": self.standalone_question, "claims": self.claims,
               "invalid_citations": self.invalid_citations, "evidence": self.evidence, "grounded": self.grounded,
               "notice": self.notice, "fallback_answer": self.fallback_answer, "model_answer": self.model_answer,
               "refusal": self.refusal, "answered_from": self.answered_from}
        if self.error is not None:
            out["error"] = self.error
        return out


def reader_blocks(ans: Answer | dict) -> list[tuple[str, str]]:
    """What the reader is shown, in order, as (kind, text) with kind "notice" | "fallback" | "heading" |
    "answer": the web chat, `/ask` and `rag ask` render these same blocks, so they say the same thing.
    An ungrounded model answer comes after the extractive one, under its heading (or not at all when it
    was replaced)."""
    get = ans.get if isinstance(ans, dict) else lambda k: getattr(ans, k, None)
    text = (get("answer") or "").strip()
    blocks = [("notice", get("notice"))] if get("notice") else []
    if get("grounded") == "no" and get("model_answer") is None:
        if get("fallback_answer"):
            blocks.append(("fallback", get("fallback_answer")))
        if text:
            blocks += [("heading", get("model_heading") or ""), ("answer", text)]
    elif text:
        blocks.append(("answer", text))
    return blocks


def fallback_quotes(ans: Answer | dict) -> dict[int, list[str]]:
    """Source number -> the lines of the extractive fallback that quote it (shown beside an ungrounded
    answer, not replacing it); the source lists flag those passages instead of calling them uncited."""
    get = ans.get if isinstance(ans, dict) else lambda k: getattr(ans, k, None)
    quoted: dict[int, list[str]] = {}
    if get("grounded") == "no" and get("model_answer") is None:
        for line in (get("fallback_answer") or "").splitlines():
            for n in re.findall(r"\[(\d+)\]", line):
                quoted.setdefault(int(n), []).append(line)
    return quoted


def source_dict(n: int, h: Hit) -> dict:
    return {"n": n, "post_id": h.post_id, "title": h.title, "date": h.date, "url": h.url, "chunk_id": h.chunk_id,
            "text": h.text, "score": round(float(h.score), 6), "tags": h.tags,
            "chunk_ids": list(getattr(h, "chunk_ids", None) or [h.chunk_id])}


def day_label(date: str | None) -> str:
    """A post's day for display: `YYYY-MM-DD`, or "no date"."""
    return (date or "no date")[:10]


def source_label(src: dict) -> str:
    """`[n] title (YYYY-MM-DD)`: how a numbered source is named by the CLI, the `/ask` API and the UI."""
    return f"[{src['n']}] {src.get('title') or src.get('post_id')} ({day_label(src.get('date'))})"


def number_sources(hits: Sequence[Hit], cited_order: Sequence[int]) -> list[dict]:
    """Cited passages first (in order of first citation), then the other retrieved ones."""
    ordered = [hits[i - 1] for i in cited_order] + [h for i, h in enumerate(hits, 1) if i not in cited_order]
    return [source_dict(n, h) for n, h in enumerate(ordered, 1)]


def retrieval_evidence(retriever: Retriever, question: str, hits: Sequence[Hit], passages: int) -> refusal.Evidence:
    """The evidence retrieval gives: best dense cosine and idf-weighted coverage of the question's
    terms by the top `passages` hits (those the extractive answer reads), the names and quoted
    titles no post holds, and the quoted clauses no chunk holds most of.

    Dense cosines bunch together (off-topic ~0.82, on-topic ~0.86 for e5), so coverage of the
    question's content terms by the top passages carries much of the signal."""
    top = hits[:passages]
    dense, coverage = _coverage(retriever, question, top)
    absent, unheld = retriever.name_evidence(question)
    return refusal.Evidence(n_passages=len(hits), dense=dense, coverage=coverage, cjk_question=has_cjk(question),
                            cjk_sources=any(has_cjk(h.text) for h in top) if hits else True,
                            absent_names=tuple(absent), unheld_clauses=tuple(unheld))


def _coverage(retriever: Retriever, question: str, hits: Sequence[Hit]) -> tuple[float | None, float]:
    if not hits:
        return None, 0.0
    scored = [h.dense_score for h in hits if h.dense_score is not None]
    dense = max(scored) if scored else None
    q_terms = set(retriever.tokenize(question))
    weights = retriever.term_idf(q_terms)
    unknown = len(q_terms) - len(weights)
    top_terms: set[str] = set()
    for h in hits:
        top_terms.update(retriever.tokenize(h.title + "\n" + h.text))
    total = sum(weights.values()) + unknown * retriever.max_idf  # terms unknown to the archive weigh the most
    covered = sum(w for t, w in weights.items() if t in top_terms)
    return (None if dense is None else round(float(dense), 4)), (round(covered / total, 4) if total else 0.0)


def source_texts(sources: Sequence[Hit]) -> list[str]:
    """Each source's title and text as the identifier and count checks read them: Markdown escapes
    removed, folded (NFKC, lower case)."""
    return [fold(unescape_markdown(f"{h.title}\n{h.text}")) for h in sources]


def identifiers_held(identifiers: Sequence[str], sources: Sequence[Hit]) -> list[set[str]]:
    """Per source: which of the question's identifiers it holds as whole identifiers (a version
    also in its releases: 3.31 in 3.31.1)."""
    return [{t for t in identifiers if metadata.has_token(x, t, series=True)} for x in source_texts(sources)]


def answer_scores(retriever: Retriever, question: str, hits: Sequence[Hit], passages: int) -> list[float]:
    """Per-sentence answer scores of today's extractive answerer (for the not-stated refusal):
    idf-weighted coverage of the question's terms by a sentence and its neighbours, over the
    sentences the extractive answerers choose from. English questions count only terms the archive
    knows (their other words are simply English)."""
    q_terms = set(retriever.tokenize(question))
    weights = retriever.term_idf(q_terms)
    unknown = 0.0 if is_english(question) else (len(q_terms) - len(weights)) * retriever.max_idf
    scores: list[float] = []
    for h in hits[:passages]:
        sents = [set(retriever.tokenize(s)) for s in extractive.passage_sentences(h.text)]
        scores.extend(refusal.window_coverage(weights, unknown, sents))
    return scores


class Assistant:
    def __init__(self, settings: Settings, retriever: Retriever, client: ChatClient | None = None,
                 prompts: Prompts | None = None):
        self.settings = settings
        self.retriever = retriever
        self.prompts = prompts or Prompts(settings.prompts_dir or None)
        if client is None and settings.llm_base_url:
            client = ChatClient(LLMConfig.from_settings(settings))
        self.client = client
        self._reader: extractive.Reader | None | bool = False  # False: not loaded yet

    @property
    def reader(self) -> extractive.Reader | None:
        """The extractive reader model, loaded on first use; None = the overlap answerer."""
        if self._reader is False:
            m = self.settings.extractive_model
            self._reader = None if m == "off" else extractive.load_reader(m or None, self.settings.extractive_cross)
        return self._reader  # type: ignore[return-value]

    def extractive(self, question: str, hits: Sequence[Hit]) -> str:
        return self.read(question, hits)[0]

    def read(self, question: str, hits: Sequence[Hit], asked: str | None = None) -> extractive.Reading:
        """The extractive answer and, with the cross reader, P(its lead sentence answers) and the
        asked value its sentences lack (`extractive.Reading`)."""
        reader, s = self.reader, self.settings
        if reader is None:
            return extractive.Reading(extractive.overlap_answer(
                question, hits, self.retriever, max_chars=s.answer_max_chars, max_passages=s.answer_passages), None)
        r = extractive.read(question, hits, extractive.index_idf(self.retriever), reader, s.answer_max_chars,
                            s.answer_passages, asked, s.answer_follow_share)
        return r if reader.cross is not None else extractive.Reading(r.text, None)

    def min_answer_p(self) -> float:
        """P(answers) the best sentence needs, else "not stated" (0 without the cross reader)."""
        reader = self.reader
        if reader is None or reader.cross is None:
            return 0.0
        v = self.settings.extractive_min_p
        return reader.cross.refuse_below if v < 0 else v

    @property
    def model_label(self) -> str:
        return self.settings.llm_model if self.client else "extractive"

    # ------------------------------------------------------------ follow-ups
    def standalone(self, question: str, history: Sequence[tuple[str, str]]) -> str:
        """Rewrite a follow-up into a standalone question (endpoint if configured, else a rule)."""
        if not history:
            return question
        if self.client is not None:
            convo = "\n".join(f"user: {_escape(u)}\nassistant: {_escape(a[:500])}" for u, a in history[-3:])
            prompt = self.prompts.get("rewrite").format(history=convo, question=_escape(question))
            try:
                out = self.client.complete([{"role": "user", "content": prompt}], max_tokens=120).strip()
                if out and len(out) < 4 * len(question) + 200:
                    return out.splitlines()[0].strip()
            except LLMError:
                pass
        if is_followup(question, bool(history)):
            return f"{history[-1][0]} {question}"
        return question

    def messages(self, question: str, hits: Sequence[Hit]) -> list[dict]:
        english = is_english(question)
        src_tpl = self.prompts.get("source")
        sources = "\n".join(src_tpl.format(n=i, title=_escape(h.title).replace('"', "＂"), date=h.date or "",
                                          text=_escape(h.text))
                            for i, h in enumerate(hits, 1))
        user = self.prompts.get("user").format(sources=sources, question=_escape(question),
                                               reminder=self.prompts.lang("reminder", english))
        return [{"role": "system", "content": self.prompts.lang("system", english)},
                {"role": "user", "content": user}]

    # ------------------------------------------------------------ answering
    def ask(self, question: str, history: Sequence[tuple[str, str]] = (), k: int | None = None,
            mode: str = "hybrid", filters: Filters = Filters(), hits: Sequence[Hit] | None = None) -> Answer:
        final = None
        for kind, payload in self.stream(question, history, k, mode, filters, hits):
            if kind == "answer":
                final = payload
        assert final is not None
        return final

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (), k: int | None = None,
               mode: str = "hybrid", filters: Filters = Filters(),
               hits: Sequence[Hit] | None = None) -> Iterator[tuple[str, object]]:
        """Yields ("delta", text) pieces, then ("answer", Answer). `hits`: passages already retrieved
        for this standalone question (as `rag eval` has them), so retrieval is not run twice."""
        t0 = time.perf_counter()
        question = check_question(question, self.settings.max_question_chars)
        standalone = self.standalone(question, history)
        if hits is None:
            hits = self.retriever.search(standalone, k or self.settings.top_k, mode, filters)
        else:
            hits = list(hits)[:k or self.settings.top_k]
        t_retrieved = time.perf_counter()
        # on the retrieved chunks, before assembly
        ev = retrieval_evidence(self.retriever, standalone, hits, self.settings.answer_passages)
        draft = _Draft(question, standalone, self.context(hits), ev.as_dict(), t0, t_retrieved, retrieved=hits)
        english = is_english(question)
        # a post described in other words than its title is taken only where the archive covers it
        covered = lambda: refusal.decide(ev, self.thresholds(), self.client is not None).action != refusal.OFF_ARCHIVE
        meta = self.metadata_answer(question, bool(history), draft.hits, english, covered)
        if meta is not None:
            yield from self._metadata(draft, meta)
            return
        if self.client is None and hits:
            ev = self.answer_evidence(draft, ev)
        decision = refusal.decide(ev, self.thresholds(), chat=self.client is not None)
        if self.client is None and hits and refusal.reader_may_change(decision):
            reading = self.extractive_read(draft)   # read once; the answer reuses it
            ev = dataclasses.replace(ev, reader_p=None if reading.p is None else round(reading.p, 4),
                                     missing_value=reading.missing_value)
            decision = refusal.decide(ev, self.thresholds(), chat=False)
        draft.evidence = ev.as_dict()
        if decision.action != refusal.ANSWER:
            yield from self._refuse(draft, english, decision)
        elif self.client is None:
            yield from self._extract(draft, english)
        else:
            yield from self._generate(draft, standalone if history else question, english)

    def thresholds(self) -> refusal.Thresholds:
        s = self.settings
        return refusal.Thresholds(
            min_dense=s.refusal_min_dense, min_coverage=s.refusal_min_coverage, gate_min_dense=s.gate_min_dense,
            gate_min_coverage=s.gate_min_coverage, reader_p=s.refusal_reader_p, min_answer_p=self.min_answer_p(),
            focus_p=s.refusal_focus_p, value_p=s.refusal_value_p, answer_min_score=s.answer_min_score,
            crosslingual_offset=s.crosslingual_dense_offset)

    def answer_evidence(self, draft: "_Draft", ev: refusal.Evidence) -> refusal.Evidence:
        """The rest of the evidence without a chat endpoint, short of reading: the question's
        identifiers and how-many counter the sources do not state, its focus noun no post uses and
        the best overlap score. The cross reader's P is added when it can change the decision."""
        scores = answer_scores(self.retriever, draft.standalone, draft.hits, self.settings.answer_passages)
        return dataclasses.replace(
            ev, missing_identifiers=tuple(refusal.missing_identifiers(*draft.identifiers)),
            missing_count=self.missing_count(draft), missing_focus=self.missing_focus(draft),
            answer_score=round(max(scores), 4) if scores else None)

    def missing_count(self, draft: "_Draft") -> str | None:
        """The counter of a how-many question (何名) when no source states a count of that kind: the
        extractive answerer would quote the post's nearest sentence, which holds no number."""
        counter = asked_count(draft.question)   # the words asked now, not a rewrite's carried ones
        if counter is None or refusal.count_stated(counter, source_texts(draft.hits)):
            return None
        return counter

    def missing_focus(self, draft: "_Draft") -> str | None:
        """The noun the question is asked of (「…授賞式はどこで開かれましたか」 -> 授賞式) when no post
        uses it: the best sentence the reader is unsure of then speaks of the topic, not of that
        thing (the award, not its ceremony). It refuses only below `refusal_focus_p`: a question
        asked of an attribute (ウツボの漢字表記は何) is often answered by a sentence that does not name it."""
        focus = asked_focus(draft.question)
        if focus is None or not self.retriever.archive_lacks(focus):
            return None
        return focus

    def _refuse(self, draft: "_Draft", english: bool, decision: refusal.Decision) -> Iterator[tuple[str, object]]:
        kind = decision.action
        draft.evidence["reason"] = decision.reason
        text = self.prompts.lang("refusal" if kind == refusal.OFF_ARCHIVE else "not_stated", english)

        def quoted(items: Sequence[str]) -> str:
            return ", ".join(f'"{x}"' for x in items) if english else "、".join(f"「{x}」" for x in items)

        # say what is missing first: the name no post holds, the version or count no source gives
        why = {"absent_names": lambda m: self.prompts.lang("absent_names", english).format(names=quoted(m)),
               "missing_identifiers": lambda m: self.prompts.lang("missing_identifiers", english).format(ids=quoted(m)),
               "missing_count": lambda m: self.prompts.lang("missing_count", english).format(counter=m[0]),
               "missing_focus": lambda m: self.prompts.lang("missing_focus", english).format(focus=m[0]),
               "missing_value": lambda m: self.prompts.lang("missing_value_" + m[0], english),
               }.get(decision.reason)
        if why is not None:
            text = why(decision.missing).strip() + "\n" + text
        yield "delta", text
        yield "answer", draft.finish(text, "refused", [], refusal_kind=kind)

    def _metadata(self, draft: "_Draft", text: str) -> Iterator[tuple[str, object]]:
        r = Renumberer(len(draft.hits))
        body = r.feed(text) + r.flush()
        yield "delta", body
        # quoted from the front matter, not generated: "extractive" in both modes
        yield "answer", draft.finish(body, "extractive", r.order(), answered_from="metadata")

    def extractive_body(self, draft: "_Draft") -> str:
        return self.extractive_read(draft)[0]

    def extractive_read(self, draft: "_Draft") -> extractive.Reading:
        """The extractive answer read from the retrieved chunks (the passages the reader was trained
        on: an assembled source starts with its post's intro, which the reader would lead with), its
        `[n]` pointing at the assembled sources that hold those chunks; its answer probability and
        the asked value it lacks.
        Read once per draft (the off-archive gate may have asked already)."""
        if draft.read is None:
            draft.read = self._read_draft(draft)
        return draft.read

    def _read_draft(self, draft: "_Draft") -> extractive.Reading:
        where: dict[str, int] = {}
        for j, src in enumerate(draft.hits, 1):
            for cid in getattr(src, "chunk_ids", None) or [src.chunk_id]:
                where.setdefault(cid, j)
        raw = [h for h in draft.retrieved if h.chunk_id in where]
        keys, held = draft.identifiers
        if keys and raw:   # read the posts that name the question's versions and ids, when some do
            n_held = [len(h) for h in held]
            best = max(n_held)
            if best:
                raw = [h for h in raw if n_held[where[h.chunk_id] - 1] == best]
        # the rule's rewrite of a follow-up is "previous question + follow-up"; an endpoint's is clean
        asked = draft.question if self.client is None and draft.standalone != draft.question else None
        if not raw:
            return self.read(draft.standalone, draft.hits, asked)
        reading = self.read(draft.standalone, raw, asked)
        to_source = {i: where[h.chunk_id] for i, h in enumerate(raw, 1)}
        body = re.sub(r"\[(\d+)\]", lambda m: f"[{to_source.get(int(m.group(1)), int(m.group(1)))}]", reading.text)
        return reading._replace(text=body)

    def _extract(self, draft: "_Draft", english: bool) -> Iterator[tuple[str, object]]:
        body = self.extractive_read(draft).text
        r = Renumberer(len(draft.hits))
        body = r.feed(body) + r.flush()
        text = self.prompts.lang("extractive", english)
        if english and has_cjk(body):   # an English reader is told why the quotes are Japanese
            text += "\n" + self.prompts.get("quoted_japanese.en")
        text += "\n\n" + body
        yield "delta", text
        yield "answer", draft.finish(text, "extractive", r.order(), claim_text=body)

    def _generate(self, draft: "_Draft", asked: str, english: bool) -> Iterator[tuple[str, object]]:
        """Stream the endpoint's answer with its citations renumbered on the fly. Text that may
        still turn out to be the no-answer marker is held back; the marker becomes a refusal."""
        r = Renumberer(len(draft.hits))
        parts: list[str] = []
        held = ""
        error = None
        try:
            for delta in self.client.stream(self.messages(asked, draft.hits)):
                out = r.feed(delta)
                if not out:
                    continue
                if not parts and refusal.could_become_marker(held + out):
                    held += out
                    continue
                out, held = held + out, ""
                parts.append(out)
                yield "delta", out
        except LLMError as exc:
            error = str(exc)
        tail = held + r.flush()
        if error is None and not parts and refusal.is_marker_reply(tail):
            yield from self._refuse(draft, english, refusal.Decision(refusal.NOT_STATED, "marker"))
            return
        if tail:
            parts.append(tail)
            yield "delta", tail
        text = "".join(parts)
        if error is not None:
            yield "answer", draft.finish(text, "error", r.order(), r.invalid, error=error)
        elif not text.strip():
            yield "answer", draft.finish("", "error", [], error=f"chat endpoint {redact_url(self.client.url)} "
                                                                f"returned an empty answer")
        else:
            yield "answer", self.ground(draft.finish(text, "llm", r.order(), r.invalid), draft)

    def ground(self, ans: Answer, draft: "_Draft") -> Answer:
        """Give a finished model answer its groundedness verdict and, when it is "no", the extractive
        answer from the same passages (numbered like `ans.sources`, or replacing the answer under the
        "replace" policy)."""
        ans.grounded = groundedness(ans.claims, ans.citations)
        english = is_english(ans.question)
        if ans.grounded == "partly":
            ans.notice = self.prompts.lang("partly", english)
        if ans.grounded != "no":
            return ans
        log.warning("ungrounded answer from model %r at %s (%d claims, none supported; policy %s): %r",
                    self.settings.llm_model, redact_url(self.client.url) if self.client else "-", len(ans.claims),
                    self.settings.ungrounded_policy, ans.question[:200])
        body = self.extractive_body(draft)
        label = self.prompts.lang("fallback", english)
        notice = self.prompts.lang("ungrounded", english)
        if body and self.settings.ungrounded_policy == "replace":
            r = Renumberer(len(draft.hits))
            body = r.feed(body) + r.flush()
            new = draft.finish(label + "\n\n" + body, "llm", r.order(), claim_text=body)
            new.grounded, new.notice, new.fallback_answer, new.model_answer = "no", notice, new.answer, ans.answer
            new.invalid_citations = ans.invalid_citations
            return new
        if body:
            shown = {s["chunk_id"]: s["n"] for s in ans.sources}  # the model's numbering of the same passages
            r = Renumberer(len(draft.hits), mapping={i: shown[h.chunk_id] for i, h in enumerate(draft.hits, 1)})
            ans.fallback_answer = label + "\n\n" + r.feed(body) + r.flush()
        ans.notice = notice
        ans.model_heading = self.prompts.lang("model_answer", english)
        return ans

    # ------------------------------------------------------------ context and metadata
    def context(self, hits: Sequence[Hit]) -> list[Hit]:
        """Assembled sources for the answerer (`rag.context`), within `context_chars`."""
        if not hits or self.settings.context_chars <= 0:
            return list(hits)
        reader = self.retriever.reader
        return assemble(hits, fetch_neighbours(reader), self.settings.context_chars,
                        self.settings.context_neighbours, header=fetch_header(reader, metadata.header))

    def metadata_answer(self, question: str, has_history: bool, sources: Sequence[Hit],
                        english: bool, covered: Callable[[], bool] = lambda: True) -> str | None:
        """An answer from the front matter when the question is about a post itself, else None.
        `covered`: whether the refusal gate lets the question through (asked only when the post is
        not named by its title, `settings.metadata_described_post`)."""
        kind = metadata.intent(question)
        if kind is None or not sources:
            return None
        lang = "en" if english else "ja"
        if kind == metadata.POSTS:
            line = self.prompts.get(f"meta_posts_item.{lang}")
            items = "\n".join(line.format(n=i, **metadata.fields(self._post_fields(s)))
                               for i, s in enumerate(sources, 1) if metadata.discusses(question, s.title, s.text))
            return self.prompts.get(f"meta_posts.{lang}").format(items=items) if items else None
        i = metadata.pick_post(question, sources, is_followup(question, has_history, opening_only=True),
                               self.settings.metadata_min_title_match)
        if i is None and self.settings.metadata_described_post:
            i = metadata.described_post(question, sources)
            if i is not None and not covered():
                i = None
        if i is None:
            return None
        f = metadata.fields(self._post_fields(sources[i]))
        return self.prompts.get(f"meta_{kind}.{lang}").format(n=i + 1, **f)

    def _post_fields(self, source: Hit) -> dict:
        return (front_matter(self.retriever.reader, source.post_id)
                or {"post_id": source.post_id, "title": source.title, "date": source.date, "tags": source.tags})


@dataclass
class _Draft:
    """What one answer is built from, before its text is known."""

    question: str
    standalone: str
    hits: Sequence[Hit]
    evidence: dict
    t0: float
    t_retrieved: float
    retrieved: Sequence[Hit] = ()   # the chunks as retrieved, before assembly into `hits`
    read: "extractive.Reading | None" = None   # the extractive answer, its P and lacking value, once read

    @cached_property
    def identifiers(self) -> tuple[list[str], list[set[str]]]:
        """The question's versions, ids and numbered names, and per source those it holds: read once
        for both the not-stated refusal and the extractive reader's choice of posts."""
        keys = key_tokens(self.standalone) + numbered_names(self.standalone)
        return keys, (identifiers_held(keys, self.hits) if keys else [])

    def finish(self, text: str, mode: str, order: Sequence[int], invalid: Sequence[int] = (),
               error: str | None = None, claim_text: str | None = None, refusal_kind: str | None = None,
               answered_from: str = "text") -> Answer:
        """The Answer: sources numbered by first citation, each cited sentence checked against them."""
        sources = number_sources(self.hits, order)
        by_n = {s["n"]: s["text"] for s in sources}
        checked = text if claim_text is None else claim_text
        claims = check_claims(checked, by_n) if mode in ("llm", "extractive") else []
        citations = []
        for s in sources[:len(order)]:
            mine = [c for c in claims if s["n"] in c.citations]
            citations.append({"n": s["n"], "post_id": s["post_id"], "chunk_id": s["chunk_id"],
                              "supported": bool(mine) and all(c.supported for c in mine)})
        t_end = time.perf_counter()
        return Answer(question=self.question, standalone_question=self.standalone, answer=text, mode=mode,
                      sources=sources, citations=citations, claims=[c.__dict__ for c in claims],
                      latency_ms={"retrieval": round((self.t_retrieved - self.t0) * 1000, 1),
                                  "generation": round((t_end - self.t_retrieved) * 1000, 1),
                                  "total": round((t_end - self.t0) * 1000, 1)},
                      error=error, invalid_citations=list(invalid), evidence=self.evidence,
                      refusal=refusal_kind, answered_from=answered_from)
