"""The command-line scripts; each is a console command (``tcmoa-fuse`` is :func:`pipelines.fuse.cli`, ...) and runs
as ``python pipelines/<script>.py`` too. One grammar everywhere: options, positional ``key=value`` overrides
(``fuser.<setting>=<value>`` for fuser settings) and comma-separated lists (see :mod:`fusion.utils.cli`)."""
