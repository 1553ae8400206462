"""Key-rate model: anchored, within 2x of the published reference points, never above PLOB."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mininet_topos import keyrate


def within_2x(model: float, reference: float) -> bool:
    return reference / 2 <= model <= reference * 2


def test_anchor_13_7_mbps_at_10_km() -> None:
    assert keyrate.rate_from_length(10) == pytest.approx(13.7e6, rel=1e-9)


def test_reference_about_1_mbps_at_50_km() -> None:
    assert within_2x(keyrate.rate_from_length(50), 1e6)


def test_reference_1_1_kbps_at_30_db() -> None:
    km = 30 / keyrate.ATTENUATION_DB_PER_KM        # 150 km of 0.2 dB/km fibre
    assert within_2x(keyrate.rate_from_length(km), 1.1e3)


def test_installed_fibre_reference_is_below_the_lab_model() -> None:
    # Tokyo 2010: 304 kb/s over 45 km of installed (lossier) fibre; a lab-grade 0.2 dB/km
    # link of the same length must not be slower, and 304 kb/s must be a legal explicit rate.
    assert keyrate.rate_from_length(45) >= 304e3
    assert 304e3 < keyrate.plob_bound_bps(45)


def test_plob_bound_values() -> None:
    # -log2(1 - eta): eta = 0.01 at 100 km -> 0.0145 bits per pulse
    assert keyrate.plob_bits_per_pulse(100) == pytest.approx(-math.log2(1 - 0.01))
    assert keyrate.plob_bound_bps(100, pulse_rate_hz=1e6) == pytest.approx(1e6 * -math.log2(0.99))
    assert keyrate.plob_bits_per_pulse(0) == math.inf


def test_zero_beyond_reach_and_monotone() -> None:
    reach = keyrate.max_length_km()
    assert 120 < reach < 300
    assert keyrate.rate_from_length(reach + 5) == 0.0
    rates = [keyrate.rate_from_length(km) for km in range(0, int(reach))]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_negative_length_rejected() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        keyrate.rate_from_length(-1)


@given(st.floats(min_value=0.0, max_value=400.0, allow_nan=False))
def test_never_above_plob(km: float) -> None:
    rate = keyrate.rate_from_length(km)
    assert 0.0 <= rate <= keyrate.plob_bound_bps(km)
