"""Fusion methods behind one interface: :class:`Fuser` and :func:`create_fuser`."""

from fusion.fusers.base import TASKS, Fuser, check_pair, create_fuser, list_fusers, register_fuser

__all__ = ["TASKS", "Fuser", "check_pair", "create_fuser", "list_fusers", "register_fuser"]
