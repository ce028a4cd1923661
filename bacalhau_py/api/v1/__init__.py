"""Bacalhau v1's orchestrator API and job model: one translation to and from our models, and its routes."""

from bacalhau_py.api.v1.routes import routes

__all__ = ["routes"]
