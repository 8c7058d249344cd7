"""Explanations of a trained classifier: the qualitative evidence behind the F1 tables.

Migliorelli et al. (Computers in Biology and Medicine 174:108430, 2024) back their results with
Class Activation Maps and t-SNE. fetalbench turns both into numbers stored in every run record
and into figures for a finished run:

- :mod:`~fetalbench.explain.cam`: Grad-CAM (Selvaraju et al., ICCV 2017);
- :mod:`~fetalbench.explain.pointing`: the pointing game (Zhang et al., ECCV 2016) against the
  phantom's structure masks;
- :mod:`~fetalbench.explain.embedding`: silhouette, k-NN accuracy and t-SNE of the embeddings;
- :mod:`~fetalbench.explain.figures`: the Grad-CAM and t-SNE figures;
- :mod:`~fetalbench.explain.explain`: the numbers of a run's test set and ``fetalbench explain``.
"""
