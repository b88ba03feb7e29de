"""The Slack stand-in, driven by the real slack_sdk WebClient (no patching)."""

from __future__ import annotations

import time

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler

from bot.demo.slack_standin import SlackStandIn

DANA = {
    "id": "U0MGR",
    "name": "dana",
    "real_name": "Dana Manager",
    "email": "dana@example.com",
    "tz": "America/New_York",
}


@pytest.fixture
def standin():
    with SlackStandIn(users=[DANA]) as s:
        yield s


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(token="xoxb-standin", base_url=standin.base_url)


def test_base_url_has_trailing_slash_and_auth_test(standin: SlackStandIn, client: WebClient) -> None:
    assert standin.base_url.startswith("http://127.0.0.1:") and standin.base_url.endswith("/api/")
    resp = client.auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team_id"]) == ("U0BOT", "B0BOT", "T0REHEARSE")


def test_post_to_user_id_lands_in_dm_and_update(standin: SlackStandIn, client: WebClient) -> None:
    meta = {"event_type": "drill_sent", "event_payload": {"drill_id": 7}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi *Dana*"}}]
    first = client.chat_postMessage(channel="U0MGR", text="Hi Dana", blocks=blocks, metadata=meta)
    assert first["channel"] == "D0MGR" == standin.dm_channel_for("U0MGR")
    assert client.conversations_open(users="U0MGR")["channel"]["id"] == "D0MGR"

    reply = client.chat_postMessage(channel="D0MGR", text="in thread", thread_ts=first["ts"])
    assert float(reply["ts"]) > float(first["ts"])
    assert [m["text"] for m in standin.messages_in("D0MGR", thread_ts=first["ts"])] == ["in thread"]

    client.chat_update(channel="D0MGR", ts=first["ts"], text="Updated")
    msg = standin.messages_in("D0MGR")[0]
    assert (msg["text"], msg["blocks"], msg["updated"], msg["metadata"]) == ("Updated", None, True, meta)

    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel="D0MGR", ts="1.000000", text="nope")
    assert err.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.postMessage", json={"channel": "C1"})
    assert err.value.response["error"] == "no_text"

    history = client.conversations_history(channel="D0MGR", include_all_metadata=True)["messages"]
    assert [m["text"] for m in history] == ["Updated"]  # top level only, thread replies excluded
    assert history[0]["metadata"] == meta
    assert "metadata" not in client.conversations_history(channel="D0MGR")["messages"][0]


def test_form_encoded_json_fields_are_decoded(standin: SlackStandIn, client: WebClient) -> None:
    client.api_call(
        "chat.postMessage", params={"channel": "C1", "text": "t", "blocks": '[{"type": "divider"}]'}
    )
    assert standin.messages_in("C1")[0]["blocks"] == [{"type": "divider"}]
    assert standin.calls_to("chat.postMessage")[0].params["channel"] == "C1"


def test_ephemeral(standin: SlackStandIn, client: WebClient) -> None:
    resp = client.chat_postEphemeral(channel="C0SALES", user="U0MGR", text="only you")
    msg = standin.messages_in("C0SALES")[0]
    assert (msg["ts"], msg["user"], msg["ephemeral"]) == (resp["message_ts"], "U0MGR", True)
    assert client.conversations_history(channel="C0SALES")["messages"] == []


def test_users_lookup_and_info(client: WebClient) -> None:
    user = client.users_lookupByEmail(email="Dana@Example.com")["user"]
    assert user["id"] == "U0MGR" and user["profile"]["email"] == "dana@example.com"
    assert user["tz"] == "America/New_York" and user["tz_offset"] in (-5 * 3600, -4 * 3600)
    assert client.users_info(user="U0MGR")["user"]["real_name"] == "Dana Manager"
    with pytest.raises(SlackApiError) as err:
        client.users_lookupByEmail(email="nobody@example.com")
    assert err.value.response["error"] == "users_not_found"
    with pytest.raises(SlackApiError) as err:
        client.users_info(user="U0NOPE")
    assert err.value.response["error"] == "user_not_found"


def test_views_publish(standin: SlackStandIn, client: WebClient) -> None:
    view = {
        "type": "home",
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "Rehearse"}}],
    }
    assert client.views_publish(user_id="U0MGR", view=view)["view"]["type"] == "home"
    assert standin.views["U0MGR"] == view


def test_rate_limit_fault_injection(standin: SlackStandIn) -> None:
    standin.fail_next("chat.postMessage", retry_after=0)
    plain = WebClient(token="xoxb-standin", base_url=standin.base_url)
    with pytest.raises(SlackApiError) as err:
        plain.chat_postMessage(channel="C1", text="hi")
    assert err.value.response.status_code == 429
    assert err.value.response["error"] == "ratelimited"
    assert err.value.response.headers["Retry-After"] == "0"

    standin.fail_next("chat.postMessage", retry_after=0)
    retrying = WebClient(
        token="xoxb-standin",
        base_url=standin.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    assert retrying.chat_postMessage(channel="C1", text="hi")["ok"]
    assert len(standin.calls_to("chat.postMessage")) == 3
    assert len(standin.messages_in("C1")) == 1


def test_server_error_and_ok_false_faults(standin: SlackStandIn, client: WebClient) -> None:
    standin.fail_next("views.publish", status=503)
    standin.fail_next("users.info", status=200, error="fatal_error", times=2)
    with pytest.raises(SlackApiError) as err:
        client.views_publish(user_id="U0MGR", view={"type": "home", "blocks": []})
    assert err.value.response.status_code == 503
    for _ in range(2):
        with pytest.raises(SlackApiError):
            client.users_info(user="U0MGR")
    assert client.users_info(user="U0MGR")["ok"]


def test_channel_pacing() -> None:
    with SlackStandIn(enforce_channel_pacing=True) as s:
        c = WebClient(token="xoxb-standin", base_url=s.base_url)
        for i in range(3):
            c.chat_postMessage(channel="C1", text=str(i))
        with pytest.raises(SlackApiError) as err:
            c.chat_postMessage(channel="C1", text="too fast")
        assert err.value.response.status_code == 429
        c.chat_postMessage(channel="C2", text="other channel is fine")


def test_files_upload_v2_round_trip(standin: SlackStandIn, client: WebClient) -> None:
    resp = client.files_upload_v2(
        channel="D0MGR", content=b"png", filename="x.png", initial_comment="Weekly digest"
    )
    file_id = resp["file"]["id"]
    assert standin.files[file_id]["content"] == b"png"
    msg = standin.messages_in("D0MGR")[0]
    assert msg["text"] == "Weekly digest" and msg["files"][0]["id"] == file_id
    assert [c.method for c in standin.calls] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]


def test_bad_token_and_unknown_method(standin: SlackStandIn, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=standin.base_url).auth_test()
    assert err.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.teleport")
    assert err.value.response["error"] == "unknown_method"


def test_wait_for_returns_value_or_explains(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", text="hello")
    assert standin.wait_for(lambda: standin.messages_in("C1"))[0]["text"] == "hello"
    started = time.monotonic()
    with pytest.raises(AssertionError, match="chat.postMessage"):
        standin.wait_for(lambda: standin.messages_in("C2"), timeout=0.1)
    assert time.monotonic() - started < 1


def test_method_tiers_refuse_the_call_past_a_minutes_allowance() -> None:
    with SlackStandIn(users=[DANA], enforce_tiers=True) as s:
        c = WebClient(token="xoxb-standin", base_url=s.base_url)
        for _ in range(50):  # users.lookupByEmail is Tier 3: 50 a minute
            c.users_lookupByEmail(email="dana@example.com")
        with pytest.raises(SlackApiError) as err:
            c.users_lookupByEmail(email="dana@example.com")
        assert err.value.response.status_code == 429
        assert err.value.response.headers["Retry-After"] == "2", "one call back in 60/50 s, rounded up"
        assert c.users_info(user="U0MGR")["ok"], "each method has its own allowance"
        assert [(r.method, r.reason) for r in s.rate_limited] == [("users.lookupByEmail", "tier")]
    with SlackStandIn(users=[DANA]) as s:  # off by default
        c = WebClient(token="xoxb-standin", base_url=s.base_url)
        for _ in range(51):
            c.users_lookupByEmail(email="dana@example.com")
        assert s.rate_limited == []


def test_random_429s_carry_retry_after_and_shut_only_that_channel_until_it_passes() -> None:
    with SlackStandIn(random_429_rate=0.1, random_retry_after=(2, 3), seed=7) as s:
        c = WebClient(token="xoxb-standin", base_url=s.base_url)
        refused = {}
        for i in range(200):
            try:
                c.chat_postMessage(channel=f"C{i:04d}", text="hello")
            except SlackApiError as exc:
                assert exc.response.status_code == 429 and exc.response["error"] == "ratelimited"
                refused[f"C{i:04d}"] = int(exc.response.headers["Retry-After"])
        assert 8 <= len(refused) <= 35, f"about 10% of 200, got {len(refused)}"
        assert set(refused.values()) <= {2, 3}
        assert len(s.messages) == 200 - len(refused), "a refused post is not posted"
        channel = next(iter(refused))
        with pytest.raises(SlackApiError) as err:
            c.chat_postMessage(channel=channel, text="too soon")
        assert err.value.response.status_code == 429
        assert [r.reason for r in s.rate_limited if r.key == channel] == ["random", "early"]
        assert s.calls[-1].status == 429
