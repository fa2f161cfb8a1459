"""Per-source feature sets (variability statistics, hardness ratios, VAE latents and anomaly
scores), versioned and queryable with Polars. No torch and no Prefect here.

    from features import get_features, list_feature_sets
    lf = get_features("demo/store.zarr", ["variability", "vae_anomaly"])
"""

from features.featurestore import FeatureSetError, get_feature_set, get_features, list_feature_sets

__all__ = ["FeatureSetError", "get_feature_set", "get_features", "list_feature_sets"]
