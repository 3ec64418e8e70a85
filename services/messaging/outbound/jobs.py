"""Outbound jobs (placeholder until outbound sending lands)."""

from arq.worker import Function

FUNCTIONS: list[Function] = []
