"""Training the autoencoder: the loop (`loop`), its data (`data`), where a run resumes
(`checkpoints`), growing a trained model (`growth`), shipping weights (`export`), several
GPUs under torchrun (`distributed`) and a lent GPU's minutes in one command (`gpu_session`).

    python -m neurocodec.training --help         # the same as nic train --help
    python -m neurocodec.training.export --help
    python -m neurocodec.training.gpu_session --help
"""
