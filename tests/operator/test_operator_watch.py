"""kopf is set up for what the operator asks of it: event handlers only, no diff-base."""

from __future__ import annotations

from maxtune.operator import watch


def test_only_event_handlers_so_no_diff_base_is_needed() -> None:
    """NoDiffBase is only right while nothing compares an object's essence: if a change,
    daemon or index handler is ever registered, kopf's own diff-base storage must come back."""
    reg = watch.registry(lambda change: None, None, lambda kind: None)  # type: ignore[arg-type]
    assert len(list(reg._watching.get_all_handlers())) == len(watch.RESOURCES)
    assert not list(reg._changing.get_all_handlers())
    assert not list(reg._spawning.get_all_handlers())
    assert not list(reg._indexing.get_all_handlers())
    storage = watch.settings().persistence.diffbase_storage
    assert isinstance(storage, watch.NoDiffBase)
    assert storage.build(body={"spec": {"big": list(range(10))}}) == {}
    assert storage.fetch(body={}) is None
