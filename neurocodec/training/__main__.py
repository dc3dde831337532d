from .loop import main

main(prog_name="python -m neurocodec.training")
