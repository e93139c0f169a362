"""Runners: jobs over many images, beside :mod:`fusion.stream` (one frame after another).

* :mod:`fusion.runners.batch` -- fuse a dataset or two folders into an output folder (``pipelines/fuse.py``);
* :mod:`fusion.runners.cache` -- the one fused-image cache (fusion once per method, settings and weights; reused by
  the segmentation and detection comparisons);
* :mod:`fusion.runners.dist` -- the one distributed context (``torchrun``) of batch fusion, training and evaluation.
"""
