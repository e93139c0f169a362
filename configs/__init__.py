"""The configs shipped with TC-MoA, installed as the package ``tcmoa_configs`` (data only: nothing here is imported).

Find one with ``fusion.utils.config.config_path("seg/fcn_r18-slim_mfnet-synthetic.py")``; commands accept the
names ``configs/<kind>/<file>`` from any folder.
"""
