"""Process settings: the public contract's environment variables, in one place."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Environment variables read by `rehearse serve` and the other commands."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: str | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    database_url: str = Field(default="sqlite:///rehearse.db", alias="DATABASE_URL")
    config_path: str = Field(default="coach.yaml", alias="REHEARSE_CONFIG")
    webhook_secret: str | None = Field(default=None, alias="REHEARSE_WEBHOOK_SECRET")
    metrics_token: str | None = Field(default=None, alias="REHEARSE_METRICS_TOKEN")
    openai_api_key: str | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    llm_model: str = Field(default="gpt-4o-mini", alias="REHEARSE_LLM_MODEL")
    port: int = Field(default=3000, alias="PORT")
    slack_workers: int = Field(default=128, ge=1, le=256, alias="REHEARSE_SLACK_WORKERS")
    http_threads: int = Field(default=100, ge=4, le=1000, alias="REHEARSE_HTTP_THREADS")
    practice_workers: int = Field(default=32, ge=1, le=512, alias="REHEARSE_PRACTICE_WORKERS")
    outbox_sweep_seconds: float = Field(default=2.0, gt=0, alias="REHEARSE_OUTBOX_SWEEP_SECONDS")
    outbox_lease_seconds: float = Field(default=120.0, ge=1, alias="REHEARSE_OUTBOX_LEASE_SECONDS")
    followup_sweep_seconds: float = Field(default=60.0, gt=0, alias="REHEARSE_FOLLOWUP_SWEEP_SECONDS")

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def api_base_url(self) -> str:
        """The Web API base URL with the trailing slash urljoin needs."""
        return self.slack_api_url if self.slack_api_url.endswith("/") else self.slack_api_url + "/"

    def serve_problems(self) -> list[str]:
        """What is missing for `rehearse serve`, each with the fix."""
        problems = []
        if not self.slack_bot_token:
            problems.append("SLACK_BOT_TOKEN: required (the bot token, xoxb-...)")
        if not self.socket_mode and not self.slack_signing_secret:
            problems.append(
                "SLACK_SIGNING_SECRET: required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)"
            )
        return problems
