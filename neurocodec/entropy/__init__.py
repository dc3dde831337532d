"""Exact entropy coding, shared by every codec family.

Whatever feeds the entropy coder must be computed bit for bit the same on every
machine, thread count and device, so this folder holds only exact parts:

- `intnet`: fixed-point networks (integer weights and activations) evaluated exactly,
  with a slow int64 reference; they predict the parameters of the latents' distributions.
- `tables`: integer probability tables, built once when weights are exported.
- `coder`: the ANS coder (constriction) over sections of integer symbols.
- `densities`: the float probability models used in training, from which the tables are built.
"""
