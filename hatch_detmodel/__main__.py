"""``python -m hatch_detmodel VERB …``: the same command line as ``hatch-detmodel``."""

from .cli import run

if __name__ == "__main__":
    run()
