"""`rag` command line: ingest, search, show (and ask, serve, eval as they are added)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from .api import describe_embedder, open_assistant, open_document_embedder, open_retriever, resolve_settings
from .config import Settings, load_settings


def _die(msg: str, code: int = 2) -> int:
    print(f"rag: error: {msg}", file=sys.stderr)
    return code


def _progress_factory(enabled: bool) -> Callable[[int, int], Callable[[int], None]] | None:
    if not enabled:
        return None

    def make(total: int, _start: int) -> Callable[[int], None]:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="embedding chunks", unit="chunk", file=sys.stderr, dynamic_ncols=True)

        def tick(n: int) -> None:
            bar.update(n)
            if bar.n >= bar.total:
                bar.close()

        return tick

    return make


def _add_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR", help="index directory (default: $RAG_INDEX_DIR or .rag-index)")


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", type=int, default=None, help="number of results (default 5)")
    p.add_argument("--mode", choices=("hybrid", "dense", "keyword"), default="hybrid")
    p.add_argument("--tag", action="append", default=[], help="only posts with this tag (repeatable)")
    p.add_argument("--category", action="append", default=[], help="only posts in this category (repeatable)")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="only posts dated on or after")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="only posts dated on or before")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rag", description="Archive assistant for a Japanese tech blog.")
    ap.add_argument("--config", metavar="TOML", help="settings file (default: $RAG_CONFIG or ./rag.toml)")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="index a folder of Markdown posts (incremental)")
    p.add_argument("path", help="folder of *.md / *.markdown posts, or a Jekyll or Hugo site's root")
    _add_index(p)
    p.add_argument("--rebuild", action="store_true", help="rebuild from scratch (e.g. after changing the embedder)")
    p.add_argument("--allow-mass-delete", action="store_true",
                   help="allow removing more than RAG_MAX_REMOVE_SHARE (half) of the indexed posts")
    p.add_argument("--json", action="store_true", help="print the report as JSON, no progress bar")

    p = sub.add_parser("search", help="search the archive")
    p.add_argument("query")
    _add_index(p)
    _add_filters(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("ask", help="answer a question from the archive, with citations")
    p.add_argument("question")
    _add_index(p)
    _add_filters(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval", help="score retrieval, answers, citations and refusals on a question set",
                       description="rag eval QUESTIONS [...]  |  rag eval compare REPORT_A REPORT_B")
    p.add_argument("questions", help="JSONL question set, or 'compare'")
    p.add_argument("reports", nargs="*", help="with 'compare': two report.json files or --out directories")
    _add_index(p)
    p.add_argument("--k", type=int, default=10, help="retrieval depth for the metrics (default 10)")
    p.add_argument("--mode", choices=("hybrid", "dense", "keyword"), default="hybrid")
    p.add_argument("--retrieval-only", action="store_true", help="skip answering")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--out", metavar="REPORT_DIR", help="write report.json, report.md and questions.jsonl here")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("show", help="a post's metadata and its chunks as indexed")
    p.add_argument("post_id")
    _add_index(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("serve", help="serve the web UI (chat, editors' timeline), its API, MCP tools and /v1",
                       description="Login: set RAG_AUTH=user:password. Binds 127.0.0.1 unless --host says otherwise.")
    _add_index(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--watch", metavar="POSTS_OR_SITE",
                   help="re-ingest this folder or site when its files change (debounced; the server switches "
                        "to each newly published index by itself)")
    p.add_argument("--no-mcp", action="store_true",
                   help="don't serve the MCP tools at /gradio_api/mcp/ (setting mcp, RAG_MCP=false)")
    p.add_argument("--no-openai-api", action="store_true",
                   help="don't serve /v1/chat/completions (setting openai_api, RAG_OPENAI_API=false)")

    p = sub.add_parser("feedback", help="readers' thumbs up/down stored by the web UI")
    p.add_argument("action", choices=("export",), help="export: print the feedback")
    _add_index(p)
    p.add_argument("--json", action="store_true", help="JSONL in the evaluation question format")
    return ap


LONG_LIVED = ("serve", "eval")  # they amortize torch's start; one-shot commands must start fast


def _settings(args: argparse.Namespace) -> Settings:
    s = load_settings(config_file=args.config, index_dir=getattr(args, "index", None))
    return resolve_settings(s, long_lived=args.command in LONG_LIVED)


def cmd_ingest(args: argparse.Namespace, s: Settings) -> int:
    from .ingest import ingest, report_json

    emb = open_document_embedder(s, rebuild=args.rebuild)
    print(describe_embedder(emb), file=sys.stderr, flush=True)
    rep = ingest(Path(args.path), Path(s.index_dir), s, emb, rebuild=args.rebuild,
                 progress=_progress_factory(not args.json), allow_mass_delete=args.allow_mass_delete)
    if args.json:
        print(report_json(rep))
    else:
        print(f"{rep.posts_seen} posts seen: {rep.posts_added} added, {rep.posts_updated} updated, "
              f"{rep.posts_removed} removed, {rep.posts_unchanged} unchanged; {rep.chunks_embedded} chunks embedded, "
              f"{rep.chunks_total} in the index ({rep.seconds:.1f} s) -> {s.index_dir}")
        if rep.site:
            print(f"  read as a {rep.site.capitalize()} site: {len(rep.excluded)} not published (drafts, "
                  f"published: false, future), {len(rep.redirects)} redirect stubs")
        for r in rep.redirects:
            print(f"  redirect {r['path']} -> {r['redirect_to']}")
        for sk in rep.skipped:
            print(f"  skipped {sk['path']}: {sk['error']}")
        for w in rep.warnings:
            print(f"  warning {w['path']}: {w['warning']}")
    return 0


def _filters(args: argparse.Namespace):
    from .retrieval import Filters, parse_day

    return Filters(tuple(args.tag), tuple(args.category), parse_day(args.since, "--since"),
                   parse_day(args.until, "--until"))


def cmd_search(args: argparse.Namespace, s: Settings) -> int:
    filters = _filters(args)
    r = open_retriever(s)
    hits = r.search(args.query, args.k, args.mode, filters)
    if args.json:
        print(json.dumps([h.as_dict(i) for i, h in enumerate(hits, 1)], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("no results")
    for i, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())[:160]
        print(f"{i}. {h.title}  ({h.date or 'no date'})  [{h.chunk_id}]  score {h.score:.4f}")
        if h.url:
            print(f"   {h.url}")
        print(f"   {snippet}")
    return 0


def cmd_ask(args: argparse.Namespace, s: Settings) -> int:
    from .generation import check_question

    check_question(args.question, s.max_question_chars)  # before loading anything
    filters = _filters(args)
    assistant = open_assistant(s)
    if args.json:
        ans = assistant.ask(args.question, k=args.k, mode=args.mode, filters=filters)
        print(json.dumps(ans.as_json(), ensure_ascii=False, indent=2))
        return 1 if ans.mode == "error" else 0
    from .answer_text import cli_answer_text, cli_footer_text

    # Streamed to a terminal as it comes; piped (or when an ungrounded answer is replaced), the complete
    # answer is printed as `/ask` shows it: a notice first when it could not be matched to the archive.
    live = sys.stdout.isatty() and s.ungrounded_policy != "replace"
    final = None
    for kind, payload in assistant.stream(args.question, k=args.k, mode=args.mode, filters=filters):
        if kind == "delta" and live:
            sys.stdout.write(payload)
            sys.stdout.flush()
        elif kind == "answer":
            final = payload
    if live:
        print()
    text = cli_answer_text(final, streamed=live)   # streamed: the answer itself is on the screen already
    if text:
        print(("\n" if live else "") + text)
    if final.mode == "error":
        print(f"\nerror: {final.error}", file=sys.stderr)
    footer = cli_footer_text(final)
    if footer:
        print(footer)
    return 1 if final.mode == "error" else 0


def cmd_eval(args: argparse.Namespace, s: Settings) -> int:
    from . import evaluation as ev

    if args.questions == "compare":
        if len(args.reports) != 2:
            return _die("usage: rag eval compare REPORT_A REPORT_B")
        print(ev.compare_reports(ev.load_report(args.reports[0]), ev.load_report(args.reports[1])))
        return 0
    questions = ev.load_questions(args.questions)[: args.limit]
    assistant = open_assistant(s)
    retriever = assistant.retriever
    bar = None
    if not args.json:
        from tqdm import tqdm

        bar = tqdm(total=len(questions), desc="evaluating", unit="q", file=sys.stderr, dynamic_ncols=True)
    records = []
    for q in questions:
        records.append(ev.evaluate_question(q, retriever, assistant, args.k, args.mode, args.retrieval_only))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    report = ev.summarize(records, args.k, args.retrieval_only)
    report["config"] = {"embedder": retriever.embedder.name, "index_chunks": retriever.reader.n_chunks,
                        "mode": args.mode, "k": args.k, "model": assistant.model_label,
                        "keyword_tokenizer": retriever.reader.info.get("keyword_tokenizer"),
                        "fusion": f"{s.fusion} dense={s.dense_weight} keyword={s.keyword_weight}",
                        "questions": str(args.questions)}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        (out / "report.md").write_text(ev.report_markdown(report), encoding="utf-8")
        with open(out / "questions.jsonl", "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(ev.report_markdown(report, f"rag eval {args.questions}"))
    return 0


def cmd_show(args: argparse.Namespace, s: Settings) -> int:
    from .index import IndexReader

    reader = IndexReader(Path(s.index_dir))
    post = reader.post(args.post_id)
    if post is None:
        return _die(f"no post {args.post_id!r} in the index at {s.index_dir}", 1)
    if args.json:
        keys = ("post_id", "title", "date", "tags", "categories", "url", "chunks")
        print(json.dumps({k: post[k] for k in keys}, ensure_ascii=False, indent=2))
        return 0
    print(f"{post['title']}\n  id: {post['post_id']}\n  date: {post['date']}\n  tags: {', '.join(post['tags'])}"
          f"\n  categories: {', '.join(post['categories'])}\n  url: {post['url']}\n  file: {post['path']}")
    for w in post["warnings"]:
        print(f"  warning: {w}")
    for c in post["chunks"]:
        print(f"\n--- {c['chunk_id']}\n{c['text']}")
    return 0


def cmd_serve(args: argparse.Namespace, s: Settings) -> int:
    from .app import parse_auth, serve
    from .index import current_generation
    from .live import SiteWatcher, log_to_stderr

    auth = parse_auth(s.auth)
    if not 0 < args.port < 65536:
        return _die(f"--port must be between 1 and 65535, got {args.port}")
    if args.no_mcp or args.no_openai_api:
        s = s.replace(mcp=False if args.no_mcp else None, openai_api=False if args.no_openai_api else None)
    log_to_stderr()
    watcher = None
    if args.watch:
        if not Path(args.watch).is_dir():
            return _die(f"--watch: not a folder: {args.watch}")
        watcher = SiteWatcher(Path(args.watch), s, _watched_ingest(Path(args.watch), s))
        if current_generation(Path(s.index_dir)) is None:  # nothing to serve yet: ingest first
            watcher.run_ingest()
    live = open_live(s)
    print(describe_embedder(live.retriever.embedder), file=sys.stderr, flush=True)
    if watcher is not None:
        watcher.start(initial=watcher.runs == 0)
    serve(live, s, host=args.host, port=args.port, auth=auth)
    return 0


def open_live(s: Settings):
    """The assistant `rag serve` uses: it follows the index's newly published generations."""
    from .live import open_live_assistant

    return open_live_assistant(s).start()


def _watched_ingest(root: Path, s: Settings) -> Callable[[], object]:
    """An ingest of root for the watcher; the document embedder is loaded on the first run and kept."""
    from .ingest import ingest

    loaded: list = []

    def run():
        if not loaded:
            loaded.append(open_document_embedder(s))
        return ingest(root, Path(s.index_dir), s, loaded[0])

    return run


def cmd_feedback(args: argparse.Namespace, s: Settings) -> int:
    from .feedback import FeedbackStore

    store = FeedbackStore.for_index(s.index_dir)
    if args.json:
        sys.stdout.write(store.export_jsonl())
        return 0
    rows = store.list()
    if not rows:
        print(f"no feedback yet in {store.path}")
        return 0
    up = sum(r["rating"] == "up" for r in rows)
    print(f"{len(rows)} ratings ({up} up, {len(rows) - up} down) in {store.path}")
    for r in rows:
        question = " ".join(r["question"].split())[:80]
        print(f"{r['id']:>5} {r['created_at']}  {r['rating']:<4} {r['mode']:<10} {question}")
    return 0


COMMANDS = {"ingest": cmd_ingest, "search": cmd_search, "ask": cmd_ask, "eval": cmd_eval, "show": cmd_show,
            "serve": cmd_serve, "feedback": cmd_feedback}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        s = _settings(args)
        return COMMANDS[args.command](args, s)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        return _die(str(exc))
    except Exception as exc:
        from .index import UnusableIndex

        if isinstance(exc, UnusableIndex):
            return _die(str(exc))
        raise


if __name__ == "__main__":
    sys.exit(main())
