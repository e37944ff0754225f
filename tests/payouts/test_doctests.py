"""The worked examples in the docstrings of the money math hold."""

from __future__ import annotations

import doctest

import pytest

import payouts.membership
import payouts.merkle
import payouts.settlement


@pytest.mark.parametrize("module", [payouts.membership, payouts.merkle, payouts.settlement])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
