"""The detector's score names, torch-free, so the command line lists them without loading torch.
Each is one entry of :data:`anomaly.scores.TABLE` (what it measures, needs, fits and saves), which
checks at import that it lists these names, in this order."""

SCORES = ("combined", "residual", "feature_residual", "critic", "critic_feature_distance", "critic_feature_knn",
          "multi_critic_distance", "ensemble")
DEFAULT_SCORE = "critic_feature_distance"
