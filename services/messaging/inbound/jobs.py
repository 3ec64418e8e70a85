"""Inbound jobs (placeholder until the inbound pipeline lands)."""

from arq.worker import Function

FUNCTIONS: list[Function] = []
