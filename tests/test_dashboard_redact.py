"""Argument display: bounded text, secrets masked by name, broken reprs survived."""

from __future__ import annotations

import pytest

from offload.dashboard._redact import MASK, is_secret, show, show_args, show_kwargs


@pytest.mark.parametrize(
    "name", ["password", "db_pass", "PWD", "api_key", "secret", "auth_header", "session_id", "csrftoken", "Cookie"]
)
def test_secret_looking_names(name: str):
    assert is_secret(name)


@pytest.mark.parametrize("name", ["user_id", "email", "count", "path", "url"])
def test_ordinary_names(name: str):
    assert not is_secret(name)


def test_kwargs_are_masked_by_name_also_in_nested_dicts():
    shown = show_kwargs(
        {
            "password": "hunter2",
            "user_id": 7,
            "config": {"api_key": "k3y", "region": "eu", "inner": [{"token": "t0k"}]},
        }
    )
    assert shown["password"] == MASK
    assert shown["user_id"] == "7"
    assert "k3y" not in shown["config"] and "t0k" not in shown["config"]
    assert "'region': 'eu'" in shown["config"]
    assert show_args(({"secret": "s"}, "plain")) == [f"{{'secret': '{MASK}'}}", "'plain'"]


def test_text_is_bounded():
    assert len(show("x" * 100_000)) < 400
    assert len(show(list(range(100_000)))) < 400
    deep: list[object] = []
    node = deep
    for _ in range(50):
        child: list[object] = []
        node.append(child)
        node = child
    assert len(show(deep)) < 400


def test_a_broken_repr_does_not_break_the_page():
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert show(Broken()).startswith("<Broken instance at 0x")  # reprlib's fallback
