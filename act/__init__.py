"""ACT (Action Chunking Transformer): model, data pipeline, training and inference.

Checkpoints are upstream ACT's contract (tonyzhaozh/act): a plain state_dict with the
`model.` prefix, loadable with `torch.load(..., weights_only=True)`.
"""
