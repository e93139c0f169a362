"""Package discovery that pyproject.toml cannot express; everything else (metadata, entry points, data) is there.

The code packages are found as usual, and the source tree's ``configs/`` folder is installed as the package
``tcmoa_configs`` (its files are package data; see ``fusion.utils.config.config_path``). An editable install maps
``tcmoa_configs`` to this checkout's ``configs/``, a normal install copies it.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["fusion", "fusion.*", "downstream", "downstream.*", "pipelines"]),
              "tcmoa_configs"],
    package_dir={"tcmoa_configs": "configs"},
)
