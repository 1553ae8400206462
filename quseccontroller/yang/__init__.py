"""The YANG modules /etsi015 documents are instance data of, and the yang-library listing them."""
from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).resolve().parent
LIBRARY = DIR / "yang-library.json"
