"""Training: learns embeddings and exports the encoder bundle (see `training.loop`)."""
