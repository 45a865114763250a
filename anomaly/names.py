"""The detector's score names (torch-free, so the command line can list them without loading torch).
What each score measures is in :mod:`anomaly.detector`."""

SCORES = ("combined", "residual", "feature_residual", "critic", "critic_feature_distance", "critic_feature_knn",
          "multi_critic_distance", "ensemble")
DEFAULT_SCORE = "critic_feature_distance"
ENSEMBLE = ("combined", "critic")
CRITIC_ONLY = ("critic", "critic_feature_distance", "critic_feature_knn", "multi_critic_distance")
MULTI = "multi_critic_distance"
