"""The base models the methods start from: EDM image and video models trained on genlab's data sets.

:mod:`genlab.base.image_model` and :mod:`genlab.base.video_model` train, save, load and sample them;
:mod:`genlab.base.config` holds their settings (torch-free, so ``genlab --help`` can read them).
This layer sits above :mod:`genlab.core`, :mod:`genlab.data` and :mod:`genlab.metrics` and below the methods.
"""
