"""MLflow pyfunc wrappers around ganpipe's torch models (loaded with ``models:/NAME@ALIAS``)."""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd


class ConditionalGeneratorModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with ``class_name`` (str) and ``seed`` (int) per row. Output: a DataFrame
    with one row per input row and one float column per pixel (``C*H*W``, values in [0, 1])."""

    def load_context(self, context) -> None:
        import torch

        from gan_aug.networks import Generator

        with open(context.artifacts["config"]) as handle:
            self.meta = json.load(handle)
        c, h, _ = self.meta["image_shape"]
        self.generator = Generator(len(self.meta["class_names"]), c, h, self.meta["z_dim"], self.meta["width"])
        self.generator.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu"))
        self.generator.eval()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import torch

        names = self.meta["class_names"]
        unknown = sorted(set(model_input["class_name"].astype(str)) - set(names))
        if unknown:
            raise ValueError(f"unknown class(es) {unknown}; known: {names}")
        rows = []
        with torch.no_grad():
            for name, seed in zip(model_input["class_name"].astype(str), model_input["seed"].astype(int)):
                z = torch.randn(1, self.meta["z_dim"], generator=torch.Generator().manual_seed(int(seed)))
                image = (self.generator(z, torch.tensor([names.index(name)])) + 1) / 2
                rows.append(image.clamp(0, 1).flatten().numpy())
        return pd.DataFrame(np.stack(rows).astype(np.float64), columns=[f"p{i}" for i in range(len(rows[0]))])


class DetectorModel(mlflow.pyfunc.PythonModel):
    """Input: images ``(N, C, H, W)`` float32 in [0, 1]. Output: one row per image with the score
    used to flag, every component score, the p-value and the flag (1 = anomalous)."""

    def load_context(self, context) -> None:
        import torch

        from anomaly.detector import GANAnomalyDetector

        state = torch.load(context.artifacts["detector"], map_location="cpu", weights_only=False)
        self.detector = GANAnomalyDetector.from_state_dict(state)

    @staticmethod
    def frame(detector, x: np.ndarray) -> pd.DataFrame:
        from anomaly.detector import SCORES

        columns = ["score", *SCORES, "p_value", "flag"]
        if len(x) == 0:
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
        parts = detector.score_components(x)
        selected = parts[detector.score]
        table = pd.DataFrame({"score": selected, **{k: parts[k] for k in SCORES}, "p_value": parts["p_value"]})
        table["flag"] = (selected > detector.threshold_).astype(np.int64)
        return table[columns]

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        return self.frame(self.detector, np.asarray(model_input, dtype=np.float32))
