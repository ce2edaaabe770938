"""``python -m corrtrack``: the ``corrtrack`` command (also ``torchrun ... -m corrtrack train ...``)."""
from corrtrack.cli import main

if __name__ == "__main__":
    main()
