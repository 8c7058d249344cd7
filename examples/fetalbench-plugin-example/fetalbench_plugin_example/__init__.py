"""An example fetalbench plugin: RotNet rotation-prediction pre-training.

fetalbench imports :mod:`fetalbench_plugin_example.rotnet` through the ``fetalbench.methods``
entry point declared in this distribution's ``pyproject.toml``; importing it registers the
methods ``rotnet`` and ``rotnet_imagenet``.
"""
