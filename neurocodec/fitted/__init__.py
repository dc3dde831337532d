"""The per-image fitted codec family (Cool-chic / C3): latents and a tiny decoder fitted to each image.

Work in progress (issue 17): so far the exact context model (`context`).
"""
