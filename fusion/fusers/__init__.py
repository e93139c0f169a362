"""Fusion methods behind one API: :class:`Fuser`, named by a :class:`FuserSpec`, built by :func:`create_fuser`."""

from fusion.fusers.base import FUSERS, TASKS, Fuser, check_pair, create_fuser, list_fusers, register_fuser
from fusion.fusers.spec import FuserSpec, build_fuser

__all__ = ["TASKS", "FUSERS", "Fuser", "FuserSpec", "build_fuser", "check_pair", "create_fuser", "list_fusers",
           "register_fuser"]
