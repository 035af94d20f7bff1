"""PyTorch Lightning next-item models, DataModule, metrics, training and batch scoring."""
