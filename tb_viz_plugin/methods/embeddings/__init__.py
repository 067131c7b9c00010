"""Embeddings: features of chosen samples (``capture``), their 2-D map (``projection``), cluster quality (``quality``).

Pure torch (scikit-learn only for the optional t-SNE map).
"""

from tb_viz_plugin.methods.embeddings.capture import (
    EmbeddingCapture,
    embedding_layer,
    extract_embeddings,
    last_linear,
    source_name,
)
from tb_viz_plugin.methods.embeddings.projection import METHODS, EmbeddingMap, embed, pca, procrustes_align, tsne
from tb_viz_plugin.methods.embeddings.quality import KNN_K, cluster_quality, knn_accuracy, silhouette

__all__ = [
    "KNN_K",
    "METHODS",
    "EmbeddingCapture",
    "EmbeddingMap",
    "cluster_quality",
    "embed",
    "embedding_layer",
    "extract_embeddings",
    "knn_accuracy",
    "last_linear",
    "pca",
    "procrustes_align",
    "silhouette",
    "source_name",
    "tsne",
]
