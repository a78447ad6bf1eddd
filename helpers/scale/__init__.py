"""Scaling out: TFRecord shards with a manifest (``shards``) and training on several devices
or workers with ``tf.distribute`` (``distribute``). Imports the core and ``helpers.files``."""
