"""The one OpenAI-compatible client factory (deployments/openai_client.py)."""

from pydantic import SecretStr

from deployments.openai_client import PLACEHOLDER_KEY, openai_client


def test_the_environment_key_never_reaches_a_configured_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    client = openai_client("http://127.0.0.1:9/v1", None, 5.0)
    assert (
        client.api_key == PLACEHOLDER_KEY
        and client.max_retries == 0
        and str(client.base_url).startswith("http://127.0.0.1:9/v1")
    )
    assert (
        openai_client("http://127.0.0.1:9/v1", SecretStr("sk-configured"), 5.0, max_retries=2).api_key
        == "sk-configured"
    )
