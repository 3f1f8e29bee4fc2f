"""``nvfp4.utils.env``: the parser of every ``NVFP4_*`` setting (errors name the variable)."""

from __future__ import annotations

import pytest

from nvfp4.utils import env


def test_choice_switch_and_whole_number(monkeypatch):
    monkeypatch.delenv("NVFP4_TEST_SETTING", raising=False)
    assert env.choice("NVFP4_TEST_SETTING", "auto", ("auto", "off")) == "auto"
    assert env.switch("NVFP4_TEST_SETTING", True) and not env.switch("NVFP4_TEST_SETTING", False)
    assert env.whole_number("NVFP4_TEST_SETTING", 16, 0) == 16
    monkeypatch.setenv("NVFP4_TEST_SETTING", "  OFF ")
    assert env.choice("NVFP4_TEST_SETTING", "auto", ("auto", "off")) == "off"
    assert env.switch("NVFP4_TEST_SETTING", True) is False
    monkeypatch.setenv("NVFP4_TEST_SETTING", " 7 ")
    assert env.whole_number("NVFP4_TEST_SETTING", 1, 1) == 7
    for bad, call in (("maybe", lambda: env.switch("NVFP4_TEST_SETTING", False)),
                      ("0", lambda: env.whole_number("NVFP4_TEST_SETTING", 1, 1)),
                      ("1.5", lambda: env.whole_number("NVFP4_TEST_SETTING", 1, 1)),
                      ("x", lambda: env.choice("NVFP4_TEST_SETTING", "a", ("a", "b")))):
        monkeypatch.setenv("NVFP4_TEST_SETTING", bad)
        with pytest.raises(ValueError, match="NVFP4_TEST_SETTING="):
            call()
