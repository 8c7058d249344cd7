"""The data stages: dataset sources and their catalog, the phantom, the image cache, tasks and
their splits, and the one function that prepares a run's data (:mod:`~fetalbench.data.prepare`)."""
