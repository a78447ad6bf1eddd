"""The command line ``helpers …`` (``cli``) and the train / evaluate workflows behind it
(``workflows``). May import every other part of ``helpers``."""
