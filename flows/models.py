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
