"""A Lago that lost or changed data, for tests of reconciliation: the fake's stored events dropped
or altered behind the sender's back (FakeLago.drop_events / alter_event, POST /_fake/drop_events and
/_fake/alter_event)."""

from __future__ import annotations

from typing import Any

from .lago_store import EventStore, Json, parse_decimal


def drop_events(store: EventStore, transaction_ids: list[str]) -> int:
    """Forgets every stored event with one of these transaction ids; returns how many went.
    Afterwards a resend of one is stored again, as after a real loss."""
    wanted = set(transaction_ids)
    with store.changed:
        kept = [event for event in store.events if event["transaction_id"] not in wanted]
        dropped = len(store.events) - len(kept)
        store.events = kept
        store.reindex()
        return dropped


def alter_event(store: EventStore, transaction_id: str, *, properties: Json | None = None, timestamp: Any = None,
                code: str | None = None, external_subscription_id: str | None = None) -> Json:
    """Changes the stored event with this transaction id in place: `properties` are merged (a None
    value removes the key), the other fields replaced when given. KeyError when absent; ValueError
    for a timestamp that is not Unix seconds."""
    with store.changed:
        for event in store.events:
            if event["transaction_id"] == transaction_id:
                break
        else:
            raise KeyError(transaction_id)
        if timestamp is not None:
            moment = parse_decimal(timestamp)
            if moment is None:
                raise ValueError(f"timestamp {timestamp!r} is not Unix seconds")
            event["timestamp"] = moment
        for name, value in (properties or {}).items():
            if value is None:
                event["properties"].pop(name, None)
            else:
                event["properties"][name] = value
        if code is not None:
            event["code"] = code
        if external_subscription_id is not None:
            event["external_subscription_id"] = external_subscription_id
        store.reindex()
        return dict(event)
