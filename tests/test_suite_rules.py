"""The suite's own rules (tests/conftest.py): a test that uses the lab must say so."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.conftest import unmarked_lab_tests


@dataclass
class FakeItem:
    nodeid: str
    fixturenames: list[str]
    markers: set[str] = field(default_factory=set)

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None


def test_a_test_using_the_lab_without_the_marker_is_named() -> None:
    items = [
        FakeItem("t.py::direct", ["lab"]),
        FakeItem("t.py::through_a_fixture", ["lab_resolver", "lab"]),
        FakeItem("t.py::marked", ["lab"], {"lab"}),
        FakeItem("t.py::offline", ["tmp_path"]),
        FakeItem("t.py::marked_offline", [], {"lab"}),
    ]
    assert unmarked_lab_tests(items) == ["t.py::direct", "t.py::through_a_fixture"]  # type: ignore[arg-type]
