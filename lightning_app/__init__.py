"""lightning_app: classic deep learning models as comparable Lightning experiments."""
