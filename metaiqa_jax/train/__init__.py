"""Training programs (meta-training, fine-tuning, evaluation, LODO) and their run reporting."""
