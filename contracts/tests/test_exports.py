"""What the package exports: all that its modules list, each name once."""

from __future__ import annotations

import carveout_contracts
from carveout_contracts import conditions, events
from carveout_contracts.events import EVENT_CLASSES, TOPIC_UNIONS


def test_the_package_exports_all_its_modules_list_once() -> None:
    exported = carveout_contracts.__all__
    assert len(exported) == len(set(exported))
    assert set(conditions.__all__) | set(events.__all__) <= set(exported)
    assert all(hasattr(carveout_contracts, name) for name in exported)


def test_star_import_brings_exactly_the_exports() -> None:
    namespace: dict[str, object] = {}
    exec("from carveout_contracts import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(carveout_contracts.__all__)


def test_every_event_class_and_topic_union_is_exported() -> None:
    for cls in EVENT_CLASSES:
        assert getattr(carveout_contracts, cls.__name__) is cls
    unions = [getattr(events, name) for name in events.__all__]
    assert all(any(union is u for u in unions) for union in TOPIC_UNIONS.values())
