"""Every role × every way to make, move, re-issue, change, block or delete a key, a user or a team
member — each status asserted — against one real proxy process (SQLite) for the module.

The principals: the master key; users with each role; admins of team T who are an internal_user and
a proxy_admin_viewer; and a blocked proxy_admin. Each case builds its own targets with the master key
first, so cases do not depend on each other (the one that removes members runs last).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.python.fakes.openai_upstream import FakeOpenAI
from tests.python.proxy_harness import Proxy
from tests.python.test_proxy_e2e import MASTER, config

ROLES = ("master", "proxy_admin", "proxy_admin_viewer", "team_admin_iu", "team_admin_pav", "internal_user",
         "internal_user_viewer", "blocked")
# The user each principal acts as ("root" stands in for the master key where a case needs a user).
ME = {"master": "root", "proxy_admin": "pa", "proxy_admin_viewer": "pav", "team_admin_iu": "ta_iu",
      "team_admin_pav": "ta_pav", "internal_user": "iu", "internal_user_viewer": "iuv", "blocked": "blk"}
USER_ROLES = {"root": "proxy_admin", "pa": "proxy_admin", "pav": "proxy_admin_viewer", "ta_iu": "internal_user",
              "ta_pav": "proxy_admin_viewer", "iu": "internal_user", "iuv": "internal_user_viewer",
              "blk": "proxy_admin", "m": "internal_user", "m2": "internal_user", "o": "internal_user"}
TEAM_ADMINS = ("ta_iu", "ta_pav")


@dataclass
class Ctx:
    p: Proxy
    keys: dict[str, str] = field(default_factory=dict)
    n: Iterator[int] = field(default_factory=itertools.count)

    def call(self, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        s, b, _ = self.p.request(method, path, body, key)
        return s, b

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        s, b = self.call(MASTER, method, path, body)
        assert s == 200, (path, body, b)
        return b

    def key(self, user: str | None, team: str | None = None, **fields: Any) -> str:
        """A fresh key made by the master key (so its limits are a proxy admin's)."""
        body = {k: v for k, v in (("user_id", user), ("team_id", team)) if v is not None}
        return str(self.admin("POST", "/key/generate", {**body, **fields})["key"])

    def fresh(self, prefix: str = "x") -> str:
        return f"{prefix}{next(self.n)}"

    def member_budget(self, user: str, budget: Any, by: str = "master") -> None:
        s, b = self.call(self.keys[by], "POST", "/team/member_update",
                         {"team_id": "T", "user_id": user, "max_budget_in_team": budget})
        assert s == 200, b


@pytest.fixture(scope="module")
def ctx() -> Iterator[Ctx]:
    with FakeOpenAI() as upstream:
        cfg = config(upstream, None)
        cfg["litellm_settings"] = {}  # no Lago: this module is about who may do what
        with Proxy(cfg) as p:
            c = Ctx(p, {"master": MASTER})
            for user, role in USER_ROLES.items():
                c.admin("POST", "/user/new", {"user_id": user, "user_role": role, "user_email": f"{user}@example.com",
                                              "auto_create_key": False})
            c.admin("POST", "/team/new", {"team_id": "T", "members_with_roles": [
                {"user_id": u, "role": "admin" if u in TEAM_ADMINS else "user"} for u in USER_ROLES if u != "o"]})
            c.admin("POST", "/team/new", {"team_id": "O", "members_with_roles": [{"user_id": "o", "role": "admin"}]})
            for role in ROLES[1:]:
                c.keys[role] = c.key(ME[role])  # each principal's own personal key
            c.admin("POST", "/user/update", {"user_id": "blk", "blocked": True})
            yield c


def exp(*, pav: int = 403, ta_iu: int = 403, ta_pav: int = 403, iu: int = 403, iuv: int = 403,
        admin: int = 200) -> dict[str, int]:
    """Expected statuses; the blocked proxy admin gets 401 on every route."""
    return {"master": admin, "proxy_admin": admin, "proxy_admin_viewer": pav, "team_admin_iu": ta_iu,
            "team_admin_pav": ta_pav, "internal_user": iu, "internal_user_viewer": iuv, "blocked": 401}


OWNER = {"ta_iu": 200, "iu": 200}  # an internal user's writes to its own keys
TEAM_ADMIN = {"ta_iu": 200, "ta_pav": 200}  # writes of either admin of team T

Setup = Callable[[Ctx, str], tuple[str, str, Any]]


def _key_op(path: str, **extra: Any) -> Callable[[str], tuple[str, str, Any]]:
    return lambda key: ("POST", path, {"key": key, **extra})


def _blocked_by(c: Ctx, by: str, key: str) -> str:
    c.call(c.keys[by], "POST", "/key/block", {"key": key})  # may be refused: the case then checks the refusal
    return key


def _ensure_member(c: Ctx, user: str) -> None:
    c.call(MASTER, "POST", "/team/member_add", {"team_id": "T", "member": {"user_id": user}})  # 400 if one


def _limited_by_team_admin(c: Ctx) -> str:
    key = c.key("m", "T")
    s, b = c.call(c.keys["team_admin_iu"], "POST", "/key/update", {"key": key, "max_budget": 1})
    assert s == 200, b
    return key


def _fresh_member(c: Ctx) -> str:
    user = c.fresh("member")
    c.admin("POST", "/team/member_add", {"team_id": "T", "member": {"user_id": user}})
    return user


CASES: list[tuple[str, Setup, dict[str, int]]] = [
    # /key/generate
    ("generate: own personal key", lambda c, r: ("POST", "/key/generate", {}), exp(**OWNER)),
    ("generate: own key in team T", lambda c, r: ("POST", "/key/generate", {"team_id": "T", "user_id": ME[r]}),
     exp(iu=200, **TEAM_ADMIN)),
    ("generate: team T's key (no user)", lambda c, r: ("POST", "/key/generate", {"team_id": "T"}),
     exp(iu=200, **TEAM_ADMIN)),
    ("generate: in T for a plain member", lambda c, r: ("POST", "/key/generate", {"team_id": "T", "user_id": "m"}),
     exp(**TEAM_ADMIN)),
    ("generate: in T for a proxy_admin member", lambda c, r: ("POST", "/key/generate",
                                                              {"team_id": "T", "user_id": "pa"}), exp()),
    ("generate: in T for a proxy_admin_viewer member",
     lambda c, r: ("POST", "/key/generate", {"team_id": "T", "user_id": "pav"}), exp(ta_pav=200)),
    ("generate: in T for a user not in T", lambda c, r: ("POST", "/key/generate",
                                                         {"team_id": "T", "user_id": c.fresh("new")}), exp()),
    ("generate: personal key for another user", lambda c, r: ("POST", "/key/generate", {"user_id": "m"}), exp()),
    ("generate: own key in a team not one's own", lambda c, r: ("POST", "/key/generate", {"team_id": "O"}), exp()),
    ("generate: a short custom key", lambda c, r: ("POST", "/key/generate", {"key": "sk-" + "a1b2c3d4"}),
     exp(admin=400, ta_iu=400, iu=400)),
    # /key/update on one's own key (made, with limits, by the master key)
    ("update own: alias", lambda c, r: _key_op("/key/update", key_alias=c.fresh())(c.key(ME[r])), exp(**OWNER)),
    ("update own: lower max_budget", lambda c, r: _key_op("/key/update", max_budget=0.5)(c.key(ME[r], max_budget=1)),
     exp(**OWNER)),
    ("update own: raise max_budget", lambda c, r: _key_op("/key/update", max_budget=1000)(c.key(ME[r], max_budget=1)),
     exp()),
    ("update own: remove max_budget", lambda c, r: _key_op("/key/update", max_budget=None)(
        c.key(ME[r], max_budget=1)), exp()),
    ("update own: widen models", lambda c, r: _key_op("/key/update", models=["custom-model", "gpt-4o"])(
        c.key(ME[r], models=["custom-model"])), exp()),
    ("update own: narrow models", lambda c, r: _key_op("/key/update", models=["custom-model"])(
        c.key(ME[r], models=["custom-model", "gpt-4o"])), exp(**OWNER)),
    ("update own: raise rate limits", lambda c, r: _key_op(
        "/key/update", rpm_limit=1000, tpm_limit=10**6, max_parallel_requests=100)(
        c.key(ME[r], rpm_limit=1, tpm_limit=1, max_parallel_requests=1)), exp()),
    ("update own: extend duration 1d → 1000d", lambda c, r: _key_op("/key/update", duration="1000d")(
        c.key(ME[r], duration="1d")), exp()),
    ("update own: a lifetime budget made daily", lambda c, r: _key_op("/key/update", budget_duration="1d")(
        c.key(ME[r], max_budget=1)), exp()),
    ("update own: unblock what an admin blocked", lambda c, r: _key_op("/key/update", blocked=False)(
        c.key(ME[r], blocked=True)), exp()),
    ("update own: another customer", lambda c, r: _key_op("/key/update", customer_id="c2")(
        c.key(ME[r], customer_id="c1")), exp()),
    ("update own: move to another user", lambda c, r: _key_op("/key/update", user_id="m")(c.key(ME[r])), exp()),
    # /key/update on team T's keys
    ("update T key: move to a proxy_admin", lambda c, r: _key_op("/key/update", user_id="pa")(c.key("m", "T")),
     exp()),
    ("update T key: move to another member", lambda c, r: _key_op("/key/update", user_id="m2")(c.key("m", "T")),
     exp(**TEAM_ADMIN)),
    ("update T key: move to team O", lambda c, r: _key_op("/key/update", team_id="O")(c.key("m", "T")), exp()),
    ("update T key: out of the team", lambda c, r: _key_op("/key/update", team_id=None)(c.key("m", "T")), exp()),
    ("update T key: raise a proxy admin's budget", lambda c, r: _key_op("/key/update", max_budget=5)(
        c.key("m", "T", max_budget=1)), exp()),
    ("update T key: raise a team admin's budget", lambda c, r: _key_op("/key/update", max_budget=5)(
        _limited_by_team_admin(c)), exp(**TEAM_ADMIN)),
    ("update T key: a proxy_admin's key", lambda c, r: _key_op("/key/update", metadata={"n": c.fresh()})(
        c.key("pa", "T")), exp()),
    # /key/regenerate
    ("regenerate: own key", lambda c, r: _key_op("/key/regenerate")(c.key(ME[r])), exp(**OWNER)),
    ("regenerate: a member's T key", lambda c, r: _key_op("/key/regenerate")(c.key("m", "T")), exp(**TEAM_ADMIN)),
    ("regenerate: a proxy_admin's T key", lambda c, r: _key_op("/key/regenerate")(c.key("pa", "T")), exp()),
    ("regenerate: a proxy_admin_viewer's T key", lambda c, r: _key_op("/key/regenerate")(c.key("pav", "T")),
     exp(ta_pav=200)),
    ("regenerate: a short new_key", lambda c, r: _key_op("/key/regenerate", new_key="sk-short-key")(c.key(ME[r])),
     exp(admin=400, ta_iu=400, iu=400)),
    # /key/block, /key/unblock
    ("block: own key", lambda c, r: _key_op("/key/block")(c.key(ME[r])), exp(**OWNER)),
    ("unblock: own key an admin blocked", lambda c, r: _key_op("/key/unblock")(c.key(ME[r], blocked=True)), exp()),
    ("unblock: own key it blocked itself", lambda c, r: _key_op("/key/unblock")(
        _blocked_by(c, r, c.key(ME[r]))), exp(**OWNER)),
    ("unblock: T key a proxy admin blocked", lambda c, r: _key_op("/key/unblock")(c.key("m", "T", blocked=True)),
     exp()),
    ("unblock: T key a team admin blocked", lambda c, r: _key_op("/key/unblock")(
        _blocked_by(c, "team_admin_iu", c.key("m", "T"))), exp(**TEAM_ADMIN)),
    ("block: a proxy_admin's T key", lambda c, r: _key_op("/key/block")(c.key("pa", "T")), exp()),
    # /key/delete
    ("delete: own key", lambda c, r: ("POST", "/key/delete", {"keys": [c.key(ME[r])]}), exp(**OWNER)),
    ("delete: a member's T key", lambda c, r: ("POST", "/key/delete", {"keys": [c.key("m", "T")]}),
     exp(**TEAM_ADMIN)),
    ("delete: a proxy_admin's T key", lambda c, r: ("POST", "/key/delete", {"keys": [c.key("pa", "T")]}), exp()),
    ("delete: a key of team O", lambda c, r: ("POST", "/key/delete", {"keys": [c.key("o", "O")]}), exp()),
    # /user/new, /user/update
    ("user/new: internal_user", lambda c, r: ("POST", "/user/new", {"user_id": c.fresh("u"),
                                                                     "auto_create_key": False}), exp()),
    ("user/new: proxy_admin", lambda c, r: ("POST", "/user/new", {"user_id": c.fresh("u"), "user_role": "proxy_admin",
                                                                   "auto_create_key": False}), exp()),
    ("user/update: own role to proxy_admin", lambda c, r: ("POST", "/user/update",
                                                           {"user_id": ME[r], "user_role": USER_ROLES[ME[r]]}
                                                           if r in ("master", "proxy_admin") else
                                                           {"user_id": ME[r], "user_role": "proxy_admin"}), exp()),
    ("user/update: unblock oneself", lambda c, r: ("POST", "/user/update", {"user_id": ME[r], "blocked": False}),
     exp()),
    ("user/update: another user to proxy_admin", lambda c, r: ("POST", "/user/update", {
        "user_id": c.admin("POST", "/user/new", {"user_id": c.fresh("u"), "auto_create_key": False})["user_id"],
        "user_role": "proxy_admin"}), exp()),
    ("user/update: block another user", lambda c, r: ("POST", "/user/update", {
        "user_id": c.admin("POST", "/user/new", {"user_id": c.fresh("u"), "auto_create_key": False})["user_id"],
        "blocked": True}), exp()),
    ("user/update: another user's budget", lambda c, r: ("POST", "/user/update",
                                                         {"user_id": "m", "max_budget": 100}), exp()),
    # /team/member_add, member_update, member_delete
    ("member_add: a new user to T", lambda c, r: ("POST", "/team/member_add",
                                                  {"team_id": "T", "member": {"user_id": c.fresh("new")}}),
     exp(**TEAM_ADMIN)),
    ("member_add: an existing user by email", lambda c, r: (
        "POST", "/team/member_add", {"team_id": "T", "member": {"user_email": c.admin("POST", "/user/new", {
            "user_id": c.fresh("known"), "user_email": f"{c.fresh('known')}@example.com",
            "auto_create_key": False})["user_email"]}}), exp(ta_pav=200)),  # a proxy_admin_viewer reads all users
    ("member_add: to team O", lambda c, r: ("POST", "/team/member_add",
                                            {"team_id": "O", "member": {"user_id": c.fresh("new")}}), exp()),
    ("member_update: own budget a proxy admin set, removed", lambda c, r: (
        c.member_budget(ME[r], 5), ("POST", "/team/member_update",
                                    {"team_id": "T", "user_id": ME[r], "max_budget_in_team": None}))[1], exp()),
    ("member_update: own budget a proxy admin set, lowered", lambda c, r: (
        c.member_budget(ME[r], 5), ("POST", "/team/member_update",
                                    {"team_id": "T", "user_id": ME[r], "max_budget_in_team": 1}))[1],
     exp(**TEAM_ADMIN)),
    ("member_update: a member's budget a proxy admin set, raised", lambda c, r: (
        c.member_budget("m", 5), ("POST", "/team/member_update",
                                  {"team_id": "T", "user_id": "m", "max_budget_in_team": 50}))[1], exp()),
    ("member_update: a member's budget a team admin set, raised", lambda c, r: (
        c.member_budget("m", None), c.member_budget("m", 1, "team_admin_iu"),
        ("POST", "/team/member_update", {"team_id": "T", "user_id": "m", "max_budget_in_team": 50}))[2],
     exp(**TEAM_ADMIN)),
    ("member_update: make a member admin", lambda c, r: ("POST", "/team/member_update", {
        "team_id": "T", "user_id": _fresh_member(c), "role": "admin"}), exp(**TEAM_ADMIN)),
    ("member_delete: a member", lambda c, r: ("POST", "/team/member_delete",
                                              {"team_id": "T", "user_id": _fresh_member(c)}), exp(**TEAM_ADMIN)),
    # Last: removes the admins' own users from T.
    ("member_delete: oneself, with a budget a proxy admin set", lambda c, r: (
        _ensure_member(c, ME[r]), c.member_budget(ME[r], 5),
        ("POST", "/team/member_delete", {"team_id": "T", "user_id": ME[r]}))[2], exp()),
]


def test_role_matrix(ctx: Ctx) -> None:
    failures = []
    for name, setup, expected in CASES:
        for role in ROLES:
            try:
                method, path, body = setup(ctx, role)
            except AssertionError as exc:  # reported with the rest: one broken case hides no other
                failures.append(f"{name:55} {role:22} setup failed: {exc}")
                continue
            s, b = ctx.call(ctx.keys[role], method, path, body)
            if s != expected[role]:
                failures.append(f"{name:55} {role:22} {s} (expected {expected[role]}) {b}")
            elif s >= 400:
                assert set(b["error"]) == {"message", "type", "param", "code"} and b["error"]["code"] == str(s)
                assert b["error"]["type"] == ("bad_request_error" if s == 400 else "auth_error"), b
    assert not failures, "\n".join(failures)


def _chat(c: Ctx, key: str, **extra: Any) -> int:
    return c.call(key, "POST", "/chat/completions", {"model": "custom-model", "messages": [
        {"role": "user", "content": "hi"}], **extra})[0]


def test_a_key_made_for_another_user_acts_only_as_itself(ctx: Ctx) -> None:
    member, other_team = _fresh_member(ctx), ctx.fresh("team")
    ctx.admin("POST", "/team/new", {"team_id": other_team,
                                    "members_with_roles": [{"user_id": member, "role": "admin"}]})
    s, made = ctx.call(ctx.keys["team_admin_iu"], "POST", "/key/generate", {"team_id": "T", "user_id": member})
    assert s == 200 and made["delegated"] is True
    key = made["key"]
    assert _chat(ctx, key) == 200  # it calls and bills as the member...
    assert ctx.call(key, "GET", "/key/info")[0] == 200
    # ...but holds none of the member's rights: no keys, not the admin of the member's team, not its user
    assert ctx.call(key, "POST", "/key/generate", {})[0] == 403
    assert ctx.call(key, "POST", "/team/member_add", {"team_id": other_team, "member": {"user_id": "x"}})[0] == 403
    assert ctx.call(key, "GET", f"/user/info?user_id={member}")[0] == 403
    ctx.admin("POST", "/user/update", {"user_id": member, "user_role": "proxy_admin"})
    assert ctx.call(key, "GET", "/user/list")[0] == 403  # promoting the member does not promote the maker
    own = ctx.key(member)
    assert ctx.call(own, "GET", "/user/list")[0] == 200
    # Re-issued by its user, the secret is the user's alone: the key acts as its user again.
    s, again = ctx.call(own, "POST", "/key/regenerate", {"key": key})
    assert s == 200 and again["delegated"] is False
    assert ctx.call(again["key"], "GET", "/user/list")[0] == 200


def test_a_team_admin_taking_a_members_key_does_not_make_the_member_an_admin(ctx: Ctx) -> None:
    member = _fresh_member(ctx)
    held_by_member = ctx.key(member, "T")
    s, b = ctx.call(ctx.keys["team_admin_iu"], "POST", "/key/update", {"key": held_by_member, "user_id": "ta_iu"})
    assert s == 200 and b["user_id"] == "ta_iu" and b["delegated"] is True
    assert ctx.call(held_by_member, "POST", "/team/member_add",
                    {"team_id": "T", "member": {"user_id": ctx.fresh()}})[0] == 403


def test_a_blocked_user_is_refused_on_every_route(ctx: Ctx) -> None:
    user = ctx.fresh("u")
    ctx.admin("POST", "/user/new", {"user_id": user, "auto_create_key": False})
    key = ctx.key(user)
    ctx.admin("POST", "/user/update", {"user_id": user, "blocked": True})
    for method, path, body in (("GET", "/key/info", None), ("POST", "/key/generate", {}),
                               ("POST", "/key/unblock", {"key": key})):
        s, b = ctx.call(key, method, path, body)
        assert s == 401 and b["error"]["message"] == f"user {user} is blocked", (path, b)
    assert _chat(ctx, key) == 401
    ctx.admin("POST", "/user/update", {"user_id": user, "blocked": False})
    assert ctx.call(key, "GET", "/key/info")[0] == 200


def test_custom_keys_need_24_characters_after_sk(ctx: Ctx) -> None:
    good = "sk-" + "Q7f-kLm2_x9RtVb4Zp0sWy3N"  # 24 characters, 24 different
    for bad in ("sk-" + good[3:-1], "sk-" + "ab" * 15, good[:10] + " " + good[11:], good[3:] + "xyz"):
        s, b = ctx.call(MASTER, "POST", "/key/generate", {"key": bad})
        assert s == 400 and b["error"]["param"] == "key", bad
    s, made = ctx.call(MASTER, "POST", "/key/generate", {"key": good})
    assert s == 200 and made["key"] == good
    s, b = ctx.call(MASTER, "POST", "/key/regenerate", {"key": good, "new_key": good[:-1]})
    assert s == 400 and b["error"]["param"] == "new_key"
    reissued = "sk-" + good[:2:-1]
    s, again = ctx.call(MASTER, "POST", "/key/regenerate", {"key": good, "new_key": reissued})
    assert s == 200 and ctx.call(reissued, "GET", "/key/info")[0] == 200


def test_a_team_admin_adding_a_user_by_id_does_not_learn_its_email(ctx: Ctx) -> None:
    user = ctx.fresh("u")
    ctx.admin("POST", "/user/new", {"user_id": user, "user_email": f"{user}@secret.example", "auto_create_key": False})
    s, b = ctx.call(ctx.keys["team_admin_iu"], "POST", "/team/member_add",
                    {"team_id": "T", "member": {"user_id": user}})
    assert s == 200 and b["added"] == [{"user_id": user, "role": "user", "user_email": None}]
