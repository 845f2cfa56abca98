"""``python -m napari_attnseg.cli`` is ``attnseg``; ``torchrun … -m napari_attnseg.cli train``
starts it once per process (see ``docs/distributed_training.md``)."""

import sys

from . import main

sys.exit(main())
