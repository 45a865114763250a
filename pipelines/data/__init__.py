"""Data: image sources behind one interface (``sources``), decoding, resizing and channel conversion
(``images``), new batches to score (``batches``), splits, imbalance and the class-spec parser
(``splits``), synthetic datasets on disk (``export``). Never imports mlflow, Prefect,
``gan_aug``, ``anomaly`` or ``flows``."""
