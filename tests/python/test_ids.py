"""The edge check for ids (proxy/ids.py): what both databases can store and index, or a 400."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, strategies as st

from llmbill.proxy import ids
from llmbill.proxy.errors import ProxyError
from llmbill.proxy.ids import MAX_ID_LENGTH, check_id, header_id, id_problem


@pytest.mark.parametrize("good", ["c", "cust-1", "café", "名前", "x" * MAX_ID_LENGTH, "a b", "😀", "\xa0"])
def test_ids_that_pass(good: str) -> None:
    assert check_id(good, "user") == good
    assert id_problem(good) is None


@pytest.mark.parametrize(("bad", "why"), [
    ("a\x00b", "control"), ("line\nbreak", "control"), ("\t", "control"), ("\x7f", "control"),
    ("\x85", "control"), ("x" * (MAX_ID_LENGTH + 1), "at most 256"), ("\ud800", "UTF-8")])
def test_ids_that_are_refused_name_the_field(bad: str, why: str) -> None:
    with pytest.raises(ProxyError) as refused:
        check_id(bad, "metadata.user_id")
    assert refused.value.status == 400 and refused.value.param == "metadata.user_id"
    assert why in refused.value.message


def _problem_by_the_rule(value: str) -> str | None:
    """The rule as the docstring states it, with no fast path: length, control characters, UTF-8."""
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters"
    if re.search("[\x00-\x1f\x7f-\x9f]", value):
        return "must not contain control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    return None


@given(st.one_of(st.text(max_size=300), st.text(st.characters(max_codepoint=0xA0), max_size=40),
                 st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=250, max_size=260)))
def test_the_ascii_fast_path_answers_as_the_rule_does(value: str) -> None:
    assert id_problem(value) == _problem_by_the_rule(value)


def test_header_ids_are_utf8() -> None:
    as_sent = "café".encode().decode("latin-1")  # what an ASGI server hands over
    assert header_id(as_sent, "x-litellm-customer-id") == "café"
    for raw in (b"\xff\xfe", b"caf\xe9"):  # not UTF-8 (the second is latin-1 bytes)
        with pytest.raises(ProxyError) as refused:
            header_id(raw.decode("latin-1"), "x-litellm-customer-id")
        assert refused.value.status == 400 and refused.value.param == "x-litellm-customer-id"
    with pytest.raises(ProxyError):
        header_id("x" * 300, "x-litellm-end-user-id")


def test_new_id_has_uuid4_hex_shape_and_never_repeats_in_a_process() -> None:
    made = [ids.new_id() for _ in range(10_000)]
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in made)
    assert len(set(made)) == len(made)
    assert len({i[12:16] for i in made}) == 1  # one process tag; the counter part differs


def test_new_ids_follow_the_clock_and_stay_unique_when_it_stands_still_or_steps_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Time order keeps a spend flush's rows at the end of spend_logs' primary key; uniqueness must not
    depend on the clock (the counter part alone never repeats in a process)."""
    now = [1_796_000_000.0]
    monkeypatch.setattr(ids, "_clock", lambda: now[0])
    made = []
    for step in (0.001, 0.0, 0.0005, 2.5, -3.0, 0.0, 0.001):  # a later ms, the same ms, a step back
        now[0] += step
        made += [ids.new_id() for _ in range(50)]
    assert len(set(made)) == len(made)
    assert all(int(i[:12], 16) == int(t * 1000) for i, t in zip(made[-50:], [now[0]] * 50))
    forward = made[:50 * 4]  # the clock only went forward (or stood still) while these were made
    assert [i[:12] for i in forward] == sorted(i[:12] for i in forward)
    later = ids.new_id()
    now[0] += 60
    assert ids.new_id() > later  # a later millisecond sorts after, whatever the counter part holds


def test_new_id_reseeds_in_a_forked_child() -> None:
    """A forked worker draws its own tag and offset: its ids never repeat the parent's (Lago dedupes
    on them), even in the same millisecond."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its draw and one id, and leave without running the parent's cleanup
        source = ids._source
        os.write(write, f"{source.tag} {source.offset} {ids.new_id()}".encode())
        os._exit(0)
    os.close(write)
    tag, offset, child = os.read(read, 128).decode().split()
    os.close(read)
    os.waitpid(pid, 0)
    parent = ids.new_id()
    assert len(child) == 32 and child != parent
    assert (tag, int(offset)) != (ids._source.tag, ids._source.offset)
