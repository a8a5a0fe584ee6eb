"""Imaging traits from expression (chapter 8; Smedley, El-Saden & Hsu, Bioinformatics 36:3537, 2020).

* :mod:`.networks`: the gene autoencoder (:class:`~.networks.GeneAutoencoder`), the supervised trait network
  (:class:`~.networks.TraitNet`, binary or multiclass) and their settings, the paper's per-trait settings
  (:data:`~.networks.PAPER_TRAIT_SETTINGS`); torch only.
* :mod:`.training`: :func:`~.training.fit_autoencoder`, :func:`~.training.fit_classifier` (early stopping on
  validation ROC AUC, best weights restored), :func:`~.training.predict_logits`.
* :mod:`.comparators`: the paper's four sklearn comparators (logistic L1/L2, random forest, gradient boosting,
  SVM) with demo and paper grids, selected by inner cross-validation on the training fold only.
* :mod:`.crossval`: stratified folds (seed 425), out-of-fold scores of the network (honest epoch selection
  inside the training fold, and the paper's epoch selection on the held-out fold, to measure its optimism) and of
  the comparators, and patient-bootstrap AUC intervals.

Importing this package imports nothing heavy; import the modules themselves.
"""
