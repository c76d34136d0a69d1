"""Fixtures of the dashboard tests (defined in tests/dashboard/serving.py, shared with e2e)."""

from tests.dashboard.serving import dashboard_database, serving

__all__ = ["dashboard_database", "serving"]
