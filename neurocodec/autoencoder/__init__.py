"""The learned transform codec (effort 0-3): a convolutional autoencoder with a mean-scale
hyperprior, gain units for variable rate and a checkerboard context.

Encode: image -> `model` analysis -> y -> hyper-analysis -> z; `latent_codecs` rounds
z and y exactly and turns them into sections for `entropy.coder`; `codec` ties it
together (`analyse`, then `Analysis.code`). Decode mirrors it (`codec.decode_latents`,
`codec.decode_pixels`).
`refine` (encode effort) improves one image's latents for the same decoder; the
API (`neurocodec.api`) orchestrates it with rate control. `weights` reads and
writes the shipped weights files, `modelfiles` finds them (torch-free).

Importing this package imports nothing heavy: torch comes with its modules.
"""
