"""Hedge: the race rules (``race``, sans-IO) and the policy with its shells (``hedge``)."""

from resilience._hedge.hedge import Hedge

__all__ = ["Hedge"]
