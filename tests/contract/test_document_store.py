"""The DocumentStore contract, run on LocalStore and on FirestoreStore against the Firestore emulator.

The `document_store` fixture (tests/fixtures/firestore.py) gives each implementation in turn.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from shared.ports import DocumentStore

UTC = dt.timezone.utc


def run_concurrently(n, target):
    """Start ``n`` threads on ``target(i)`` behind a barrier so they really race; return their results."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    failures: list = []

    def run(i):
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # reported below, with the thread's own traceback
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


def test_implements_the_port(document_store):
    assert isinstance(document_store.store, DocumentStore)
    document_store.store.health()


def test_get_of_a_missing_document_is_none(document_store):
    assert document_store.store.get("things", "absent") is None


def test_set_then_get_round_trips_json_values(document_store):
    store = document_store.store
    doc = {
        "text": "héllo ✓", "int": 42, "negative": -7, "float": 2.5, "yes": True, "no": False, "nothing": None,
        "list": [1, "two", {"three": 3, "inner": [4]}], "map": {"inner": {"deep": "value"}, "empty": {}},
        "empty_list": [],
        "$datetime": "a user key that looks like an internal tag",
        "tagged": {"$datetime": "not a date", "$map": 1},
    }
    store.set("things", "one", doc)
    assert store.get("things", "one") == doc


def test_an_array_directly_inside_an_array_is_refused(document_store):
    # Firestore cannot store one; the embedded store refuses it too so nothing works only on a laptop.
    with pytest.raises(ValueError):
        document_store.store.set("things", "one", {"list": [1, [2]]})
    with pytest.raises(ValueError):
        document_store.store.create("things", "one", {"map": {"list": [[1]]}})
    assert document_store.store.get("things", "one") is None


def test_set_without_merge_replaces_the_whole_document(document_store):
    store = document_store.store
    store.set("things", "one", {"a": 1, "b": {"x": 1}})
    store.set("things", "one", {"c": 3})
    assert store.get("things", "one") == {"c": 3}


def test_merge_merges_maps_field_by_field_and_replaces_other_values(document_store):
    store = document_store.store
    store.set("things", "one", {"keep": 1, "map": {"a": 1, "nested": {"x": 1, "y": 2}}, "list": [1, 2, 3]})
    store.set("things", "one", {"map": {"b": 2, "nested": {"y": 20}}, "list": [9], "new": "n"}, merge=True)
    assert store.get("things", "one") == {
        "keep": 1, "map": {"a": 1, "b": 2, "nested": {"x": 1, "y": 20}}, "list": [9], "new": "n"}


def test_merge_onto_a_missing_document_creates_it(document_store):
    store = document_store.store
    store.set("things", "fresh", {"a": {"b": 1}}, merge=True)
    assert store.get("things", "fresh") == {"a": {"b": 1}}


def test_merge_replaces_a_scalar_with_a_map_and_a_map_with_a_scalar(document_store):
    store = document_store.store
    store.set("things", "one", {"a": 1, "b": {"x": 1}})
    store.set("things", "one", {"a": {"y": 2}, "b": 5}, merge=True)
    assert store.get("things", "one") == {"a": {"y": 2}, "b": 5}


def test_create_only_when_absent(document_store):
    store = document_store.store
    assert store.create("things", "one", {"v": 1}) is True
    assert store.create("things", "one", {"v": 2}) is False
    assert store.get("things", "one") == {"v": 1}


def test_concurrent_creates_of_one_id_have_exactly_one_winner(document_store):
    store = document_store.store
    results = run_concurrently(20, lambda i: store.create("things", "contended", {"winner": i}))
    assert results.count(True) == 1
    assert store.get("things", "contended") == {"winner": results.index(True)}


def test_delete_says_whether_the_document_existed(document_store):
    store = document_store.store
    store.set("things", "one", {"v": 1})
    assert store.delete("things", "one") is True
    assert store.get("things", "one") is None
    assert store.delete("things", "one") is False
    assert store.create("things", "one", {"v": 2}) is True


def test_list_filters_by_prefix_and_orders_by_id(document_store):
    store = document_store.store
    ids = ["b", "a", "ab", "abc", "a:2", "a:10", "b:1", "ä", "a\uffff", "c"]
    for doc_id in ids:
        store.set("things", doc_id, {"id": doc_id})
    store.set("other", "a", {"id": "elsewhere"})
    assert [doc_id for doc_id, _ in store.list("things")] == sorted(ids)
    assert [doc_id for doc_id, _ in store.list("things", prefix="a")] == ["a", "a:10", "a:2", "ab", "abc", "a\uffff"]
    assert store.list("things", prefix="a:") == [("a:10", {"id": "a:10"}), ("a:2", {"id": "a:2"})]
    assert store.list("things", prefix="zz") == []
    assert store.list("empty-collection") == []


def test_list_limit(document_store):
    store = document_store.store
    for i in range(5):
        store.set("things", f"k{i}", {"i": i})
    assert [doc_id for doc_id, _ in store.list("things", limit=2)] == ["k0", "k1"]
    assert [doc_id for doc_id, _ in store.list("things", prefix="k", limit=10)] == [f"k{i}" for i in range(5)]
    assert store.list("things", limit=0) == []


def test_update_creates_modifies_and_deletes(document_store):
    store = document_store.store
    seen = []

    def create(doc):
        seen.append(doc)
        return {"n": 1}

    assert store.update("things", "counter", create) == {"n": 1}
    assert seen[-1] is None
    assert store.update("things", "counter", lambda doc: {**doc, "n": doc["n"] + 1, "extra": True}) == {
        "n": 2, "extra": True}
    assert store.get("things", "counter") == {"n": 2, "extra": True}
    assert store.update("things", "counter", lambda doc: None) is None
    assert store.get("things", "counter") is None
    assert store.update("things", "never", lambda doc: None) is None
    assert store.get("things", "never") is None


def test_update_that_raises_changes_nothing(document_store):
    store = document_store.store
    store.set("things", "one", {"n": 1})

    def explode(doc):
        doc["n"] = 99  # mutating the argument must not leak into the store either
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        store.update("things", "one", explode)
    assert store.get("things", "one") == {"n": 1}


def test_concurrent_updates_lose_no_increment(document_store):
    store = document_store.store
    store.set("things", "counter", {"n": 0})
    run_concurrently(12, lambda i: store.update("things", "counter", lambda doc: {"n": doc["n"] + 1}))
    assert store.get("things", "counter") == {"n": 12}


def test_datetimes_round_trip_as_aware_utc(document_store):
    store = document_store.store
    utc = dt.datetime(2025, 3, 30, 1, 2, 3, 456789, tzinfo=UTC)
    paris = dt.datetime(2025, 3, 30, 3, 2, 3, 456789, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    naive = dt.datetime(2025, 1, 1, 12, 0, 0)
    store.set("things", "times", {"utc": utc, "paris": paris, "naive": naive, "nested": {"list": [utc]}})
    back = store.get("things", "times")
    assert back["utc"] == utc and back["utc"].utcoffset() == dt.timedelta(0)
    assert back["paris"] == utc and back["paris"].utcoffset() == dt.timedelta(0)
    assert back["naive"] == naive.replace(tzinfo=UTC)
    assert back["nested"]["list"] == [utc]
    assert type(back["utc"]) is dt.datetime
    assert store.list("things")[0][1]["utc"] == utc
    assert store.update("things", "times", lambda doc: {"later": doc["utc"] + dt.timedelta(days=1)}) == {
        "later": utc + dt.timedelta(days=1)}


def test_returned_documents_are_copies(document_store):
    store = document_store.store
    store.set("things", "one", {"map": {"a": 1}, "list": [1]})
    got = store.get("things", "one")
    got["map"]["a"] = 2
    got["list"].append(2)
    assert store.get("things", "one") == {"map": {"a": 1}, "list": [1]}


def test_written_data_is_seen_by_a_new_instance(document_store):
    store = document_store.store
    moment = dt.datetime(2025, 6, 1, 8, 30, tzinfo=UTC)
    store.set("things", "one", {"at": moment, "v": [1, {"x": "y"}]})
    store.create("things", "two", {"v": 2})
    store.update("things", "three", lambda doc: {"v": 3})
    store.set("things", "gone", {"v": 0})
    store.delete("things", "gone")
    again = document_store.reopen()
    assert again.get("things", "one") == {"at": moment, "v": [1, {"x": "y"}]}
    assert again.list("things") == [("one", {"at": moment, "v": [1, {"x": "y"}]}), ("three", {"v": 3}),
                                    ("two", {"v": 2})]
    assert again.create("things", "two", {"v": "again"}) is False


@pytest.mark.parametrize("doc_id", ["", "a/b", ".", ".."])
def test_invalid_document_ids_are_refused(document_store, doc_id):
    with pytest.raises(ValueError):
        document_store.store.set("things", doc_id, {"v": 1})


def test_collection_names_may_not_nest(document_store):
    with pytest.raises(ValueError):
        document_store.store.get("things/one/sub", "x")
