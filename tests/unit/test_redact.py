"""Secrets are masked wherever they surface: nested events, argv, free text."""

from __future__ import annotations

import pytest

from aim_engine import redact

TOKEN = "hf_" + "A1b2C3d4E5f6G7h8I9j0K1"


@pytest.mark.parametrize("name, secret", [("HF_TOKEN", True), ("AWS_SECRET_ACCESS_KEY", True), ("api_key", True),
                                          ("MY_SECRET", True), ("db-password", True), ("KEY", True),
                                          ("max_tokens", False), ("monkey", False), ("AIM_PORT", False),
                                          ("tokenizer", False)])
def test_secret_names(name, secret):
    assert redact.is_secret_name(name) is secret


def test_hf_tokens_anywhere_in_text():
    assert redact.mask_text(f"GET https://x/?t={TOKEN} failed") == "GET https://x/?t=*** failed"
    assert redact.mask_text("hf_short stays") == "hf_short stays"


def test_nested_structures():
    event = {"event": f"using {TOKEN}", "env": {"HF_TOKEN": "plain", "API_KEY": "k1", "PATH": "/bin"},
             "items": [{"client_secret": "s"}, ("x", TOKEN)], "count": 3}
    out = redact.mask(event, secrets=())
    assert out["event"] == "using ***"
    assert out["env"] == {"HF_TOKEN": "***", "API_KEY": "***", "PATH": "/bin"}
    assert out["items"] == [{"client_secret": "***"}, ("x", "***")] and out["count"] == 3
    assert event["env"]["HF_TOKEN"] == "plain"   # the input is not modified


def test_values_of_secret_environment_variables_are_masked_as_substrings():
    env = {"MY_SERVICE_TOKEN": "s3cr3t-value", "SHORT_KEY": "abc", "HOME": "/root"}
    known = redact.secret_values(env)
    assert known == {"s3cr3t-value"}   # short values would mask too much
    assert redact.mask("error at s3cr3t-value/x in /root", known) == "error at ***/x in /root"


def test_secret_values_default_to_process_environment(monkeypatch):
    monkeypatch.setenv("SOME_DEPLOY_SECRET", "zzz-very-secret")
    assert redact.mask("x zzz-very-secret y") == "x *** y"


def test_empty_and_false_values_under_secret_keys_stay():
    assert redact.mask({"HF_TOKEN": None, "USE_KEY": False, "X_TOKEN": ""}, secrets=()) == \
        {"HF_TOKEN": None, "USE_KEY": False, "X_TOKEN": ""}


def test_argv():
    argv = ["vllm", "serve", "m", "--api-key", "abc123", f"--hf-token={TOKEN}", "--port", "8000", f"--x={TOKEN}"]
    assert redact.mask_argv(argv, secrets=()) == ["vllm", "serve", "m", "--api-key", "***", "--hf-token=***",
                                                  "--port", "8000", "--x=***"]


def test_masking_stream_sees_a_secret_split_across_writes():
    import io

    out = io.StringIO()
    stream = redact.MaskingStream(out)
    for piece in ('{"url": "http://u:', "pass", 'word@h/?token=abc', 'def"}\n', f"a {TOKEN[:5]}", f"{TOKEN[5:]} b\n"):
        stream.write(piece)
    stream.flush()
    assert out.getvalue() == '{"url": "http://***@h/?token=***"}\na *** b\n'
