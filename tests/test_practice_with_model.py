"""With OPENAI_BASE_URL set, the roleplay's buyer and grader are a model (the real openai client, a fake server)."""

from __future__ import annotations

from bot.app import create_app
from bot.config import parse_config
from bot.practice.llm_buyer import LLMBuyer
from bot.practice.llm_grader import LLMGrader
from bot.slack import ids
from tests.conftest import MANAGER, REP, TEST_CONFIG, low_calls, make_settings
from tests.fake_openai import FakeOpenAI, malformed_json, reply_json


def test_the_model_plays_the_buyer_in_the_slack_thread(start_app, database_url, standin):
    with FakeOpenAI() as model:
        model.always(lambda request: malformed_json()
                     if request["response_format"]["json_schema"]["name"] == "rubric_grade"
                     else reply_json({"line": "Fine, but what would that save us per truck?", "ends_call": False}))
        settings = make_settings(database_url, standin).model_copy(update={"openai_base_url": model.base_url})
        app = create_app(settings, config=parse_config(TEST_CONFIG))
        assert isinstance(app.coach.buyer, LLMBuyer) and isinstance(app.coach.grader, LLMGrader)
        app.stop()

        harness = start_app(buyer=app.coach.buyer)
        harness.send_calls(low_calls())
        harness.slack.click(harness.approval_message(), ids.APPROVE, user=MANAGER)
        invite = harness.invite()
        harness.slack.click(invite, ids.START_PRACTICE, user=REP)
        harness.standin.wait_for(lambda: len(harness.thread(invite)) >= 2)
        harness.slack.dm(user=REP, channel=invite["channel"], text="What is the price compared against?",
                         thread_ts=invite["ts"])
        answer = harness.standin.wait_for(lambda: next((m for m in harness.thread(invite)
                                                        if "per truck" in m["text"]), None))
        assert answer["text"].startswith("Dana Whitfield:")
        assert any(r["messages"][-1]["content"] == "What is the price compared against?" for r in model.requests)
