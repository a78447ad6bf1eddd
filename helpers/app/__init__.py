"""The command line ``helpers …`` (``cli``) and what runs behind it: train and evaluate
(``workflows``), heatmaps for ``predict --explain`` (``heatmaps``), and the export of a model
folder (``export``, ``export_formats``). May import every other part of ``helpers``."""
