"""Bringing networks up and down: QuSeC, the agent fleet, loopback and Mininet launchers, the machine-wide lock, clean-up."""
