"""Fakes and helpers the tests share; imported one way: ``from tests.helpers.X import ...``."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]   # the repository
