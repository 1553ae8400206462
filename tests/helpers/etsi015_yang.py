"""Validation of /etsi015 documents against the YANG modules QuSeC ships (yangson, RFC 7951 JSON)."""
from __future__ import annotations

from functools import lru_cache

from yangson import DataModel
from yangson.enumerations import ContentType
from yangson.exceptions import RawDataError, ValidationError

from quseccontroller.yang import DIR, LIBRARY


INVALID = (RawDataError, ValidationError)   # what yangson raises for a document the YANG refuses


@lru_cache(maxsize=1)
def data_model() -> DataModel:
    return DataModel.from_file(str(LIBRARY), [str(DIR)])


def validate(doc: dict) -> None:
    """Raise (a yangson error naming the instance path) unless ``doc``, one node's document, is
    valid state data (config and non-config) of etsi-qkd-sdn-node plus QuSeC's augment."""
    data_model().from_raw(doc).validate(ctype=ContentType.all)


def validate_export(export: dict) -> None:
    """Every node's document of an /etsi015 export."""
    for node, doc in export.items():
        try:
            validate(doc)
        except Exception as e:
            raise AssertionError(f"node {node}: {type(e).__name__}: {e}") from e
