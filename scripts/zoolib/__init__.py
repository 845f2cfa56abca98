"""The model zoo's scripts, by job; ``scripts/zoo.py`` is their command line.

* :mod:`.paths` — the folders (recipes, runs, data, weights, docs) and JSON helpers;
* :mod:`.recipes` — the recipes, derived from the data in ``recipes/tasks/``;
* :mod:`.runs` — run folders: start, resume, extend and score runs, one driver at a time;
* :mod:`.cards` — what a shipped card must say, the shipped cards, ``index.json``;
* :mod:`.packaging` — fp16 weights and completed cards into the package;
* :mod:`.docs` — ``docs/zoo.md`` from the shipped cards;
* :mod:`.campaign` — the GPU campaign.

The folders are read from :mod:`.paths` when used (``paths.RECIPES``, not a copy), so
that tests can move them all by patching that one module.
"""
