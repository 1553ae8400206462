"""Secret key rate of a QKD link from its fibre length (decoy-BB84-like), capped by PLOB.

Model
-----
A decoy-state BB84 link (Gottesman-Lo-Lutkenhaus-Preskill key rate with the
single-photon yield and error from an ideal decoy estimate; Lo, Ma & Chen,
PRL 94, 230504 (2005)) over standard fibre at ``ATTENUATION_DB_PER_KM``:

    eta     = 10^(-0.02 L) * ETA_BOB              (channel x receiver efficiency)
    Q_mu    = Y0 + 1 - exp(-eta mu)               (signal gain)
    E_mu    = (Y0/2 + E_D (1 - exp(-eta mu))) / Q_mu
    Q_1     = (Y0 + eta) mu exp(-mu),  e_1 = (Y0/2 + E_D eta) / (Y0 + eta)
    r(L)    = Q_1 (1 - h(e_1 + d)) - F_EC Q_mu h(E_mu)   bits per pulse

where ``d = sqrt(ln(1/EPS_PE) / (2 n_1))`` is a finite-size allowance on the
phase error for ``n_1`` single-photon detections in one estimation window of
``WINDOW_S`` seconds.  The per-pulse rate is scaled so that the model gives
exactly ``ANCHOR_BPS`` (13.7 Mb/s, the best sustained link reported, about
2 dB) at ``ANCHOR_KM`` (10 km), and the result is capped by the PLOB bound
(Pirandola et al., Nat. Commun. 8, 15043 (2017)): no repeaterless link can
exceed ``-log2(1 - eta_channel)`` secret bits per pulse, here at
``PULSE_RATE_HZ`` pulses per second.

The detector parameters (``Y0``, ``ETA_BOB``, ``E_D``, ``WINDOW_S``) are not
one device's data sheet: they are plausible values for a GHz-gated InGaAs
system, chosen so that the curve passes within a factor 2 of published reference
points (13.72 Mb/s sustained at 10 km, about 1 Mb/s at 50 km, about 1 kb/s at
30 dB = 150 km; docs/topologies.md lists them).  Installed fibre is lossier than 0.2 dB/km (splices,
connectors): give such links an explicit ``rate_bps`` (e.g. Tokyo 2010's
304 kb/s over 45 km).
"""
from __future__ import annotations

import math

ATTENUATION_DB_PER_KM = 0.2
ANCHOR_KM = 10.0
ANCHOR_BPS = 13.7e6
PULSE_RATE_HZ = 1e9        # pulses per second: 1 GHz gated systems (the anchor's class)

MU = 0.5                   # signal mean photon number
ETA_BOB = 0.3              # receiver optics x detector efficiency
Y0 = 3e-7                  # dark/after-pulse click probability per gate
E_D = 0.03                 # optical misalignment error
F_EC = 1.16                # error-correction inefficiency
EPS_PE = 1e-10             # parameter-estimation failure probability
WINDOW_S = 0.01            # estimation window (finite-size allowance)


def transmittance(km: float) -> float:
    """Channel transmittance eta of ``km`` of fibre at 0.2 dB/km."""
    if km < 0:
        raise ValueError(f"fibre length must not be negative, got {km}")
    return 10.0 ** (-ATTENUATION_DB_PER_KM * km / 10.0)


def plob_bits_per_pulse(km: float) -> float:
    """PLOB bound -log2(1 - eta): secret bits per channel use over ``km`` of fibre."""
    eta = transmittance(km)
    if eta >= 1.0:
        return math.inf
    return -math.log2(1.0 - eta)


def plob_bound_bps(km: float, pulse_rate_hz: float = PULSE_RATE_HZ) -> float:
    """PLOB bound in bits/s for a link of ``km`` at ``pulse_rate_hz`` channel uses per second."""
    return plob_bits_per_pulse(km) * pulse_rate_hz


def _h(x: float) -> float:
    """Binary entropy; 1 at and beyond an error rate of 1/2."""
    if x <= 0.0:
        return 0.0
    if x >= 0.5:
        return 1.0
    return -x * math.log2(x) - (1.0 - x) * math.log2(1.0 - x)


def _bits_per_pulse(km: float) -> float:
    eta = transmittance(km) * ETA_BOB
    clicks = 1.0 - math.exp(-eta * MU)
    q_mu = Y0 + clicks
    e_mu = (Y0 / 2.0 + E_D * clicks) / q_mu
    y1 = Y0 + eta
    q1 = y1 * MU * math.exp(-MU)
    e1 = (Y0 / 2.0 + E_D * eta) / y1
    n1 = PULSE_RATE_HZ * WINDOW_S * q1
    d = math.sqrt(math.log(1.0 / EPS_PE) / (2.0 * n1))
    return max(0.0, q1 * (1.0 - _h(e1 + d)) - F_EC * q_mu * _h(e_mu))


_SCALE = ANCHOR_BPS / _bits_per_pulse(ANCHOR_KM)


def model_rate(km: float) -> float:
    """The decoy-BB84-like rate in bits/s before the PLOB cap (0 beyond the model's reach)."""
    return _SCALE * _bits_per_pulse(km)


def rate_from_length(km: float) -> float:
    """Secret key rate in bits/s of a link with ``km`` of fibre (0.0 when no key is possible)."""
    km = float(km)
    return min(model_rate(km), plob_bound_bps(km))


def max_length_km(step: float = 0.5) -> float:
    """Longest fibre (to ``step`` km) for which the model still yields key."""
    km = ANCHOR_KM
    while rate_from_length(km + step) > 0.0:
        km += step
    return km
