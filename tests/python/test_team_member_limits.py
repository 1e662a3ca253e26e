"""A team's per-member limits (`team_member_budget` and its window `team_member_budget_duration`,
`team_member_rpm_limit`, `team_member_tpm_limit`; proxy/entity_limits.member_entry), end to end on
SQLite and PostgreSQL with bodies as LiteLLM's docs write them: each member's keys in the team share
the member's limits; other members have their own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.python.fakes.lago import FakeLago
from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_litellm_fields_e2e import TINY, chat, get, key_of, post, refused_for_budget
from tests.python.test_proxy_e2e import config, lago_env


@pytest.fixture(params=["sqlite", "postgres"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAI, lago: FakeLago) -> Iterator[Proxy]:
    db = None
    if request.param == "postgres":
        from tests.python.pg import create_database

        db = create_database(str(request.getfixturevalue("postgres_url")), f"members_{uuid.uuid4().hex[:10]}")
    if time.time() % 60 > 50:  # rate limits count per minute: start the test inside one
        time.sleep(61 - time.time() % 60)
    with Proxy(config(upstream, db), lago_env(lago, "team_id")) as p:
        yield p


def test_each_member_has_the_teams_member_rpm_limit_across_its_keys(proxy: Proxy) -> None:
    s, team = post(proxy, "/team/new", {"team_alias": "rpm-team", "team_member_rpm_limit": 1,
                                        "members_with_roles": [{"role": "user", "user_id": "krrish"},
                                                               {"role": "user", "user_id": "ishaan"}]})
    assert s == 200 and team["team_member_rpm_limit"] == 1, team
    first, second = (key_of(proxy, {"team_id": team["team_id"], "user_id": "krrish"}) for _ in range(2))
    assert chat(proxy, first)[0] == 200
    s, body, headers = chat(proxy, second)  # another key of the same member: the member's minute is used
    assert s == 429 and "member" in body["error"]["message"] and "rpm limit 1" in body["error"]["message"]
    assert headers["retry-after"]
    other = key_of(proxy, {"team_id": team["team_id"], "user_id": "ishaan"})
    assert chat(proxy, other)[0] == 200  # each member has its own
    s, info = get(proxy, f"/team/info?team_id={team['team_id']}")
    assert info["team_info"]["team_member_rpm_limit"] == 1


def test_the_member_tpm_limit_and_an_update_that_lifts_it(proxy: Proxy) -> None:
    s, team = post(proxy, "/team/new", {"team_alias": "tpm-team", "team_member_tpm_limit": 10,
                                        "members_with_roles": [{"role": "user", "user_id": "krrish"}]})
    assert s == 200, team
    key = key_of(proxy, {"team_id": team["team_id"], "user_id": "krrish"})
    assert chat(proxy, key)[0] == 200  # 19 tokens: over 10 from now on in this minute
    s, body, _ = chat(proxy, key)
    assert s == 429 and "tpm limit 10" in body["error"]["message"]
    s, updated = post(proxy, "/team/update", {"team_id": team["team_id"], "team_member_tpm_limit": None})
    assert s == 200, updated
    assert chat(proxy, key)[0] == 200
    service = key_of(proxy, {"team_id": team["team_id"]})  # no user: no member, no member limit
    assert post(proxy, "/team/update", {"team_id": team["team_id"], "team_member_tpm_limit": 1})[0] == 200
    assert chat(proxy, service)[0] == 200 and chat(proxy, service)[0] == 200


def test_a_member_over_its_budget_calls_again_once_its_window_ends(proxy: Proxy) -> None:
    """`team_member_budget_duration` (2s here): the member's spend in the team resets at each window's
    end, so a member refused for its budget (422) calls again in the next window."""
    s, team = post(proxy, "/team/new", {"team_alias": "window-team", "team_member_budget": TINY,
                                        "team_member_budget_duration": "2s",
                                        "members_with_roles": [{"role": "user", "user_id": "krrish"}]})
    assert s == 200 and team["team_member_budget_duration"] == "2s", team
    key = key_of(proxy, {"team_id": team["team_id"], "user_id": "krrish"})
    assert chat(proxy, key)[0] == 200
    refused = chat(proxy, key)
    assert refused[0] == 422 and "Max budget in team" in refused_for_budget(refused)
    deadline = time.monotonic() + 30  # the window starts at a flush after the record exists, ends 2s on
    while (reply := chat(proxy, key))[0] != 200:
        assert reply[0] == 422 and "Max budget in team" in refused_for_budget(reply), reply
        assert time.monotonic() < deadline, "the member's window never reset"
        time.sleep(0.25)
