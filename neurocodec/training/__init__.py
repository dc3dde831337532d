"""Training the autoencoder: the loop (`loop`), its data (`data`), where a run resumes
(`checkpoints`), growing a trained model (`growth`) and shipping weights (`export`).

    python -m neurocodec.training --help         # the same as nic train --help
    python -m neurocodec.training.export --help
"""
