"""The built-in phantom: synthetic B-mode images in the FETAL_PLANES_DB layout, and the
measurement of its difficulty (:mod:`~fetalbench.data.phantom.calibration`)."""
