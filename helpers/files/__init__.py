"""Reading files defensively, for the core: text encodings, strict JSON and atomic writes
(``fileio``); images under a pixel budget (``images``), inside ``tf.data`` (``decode``) and as
pictures for plots (``pictures``); listing a folder's images (``folders``); the hardened
readers of VOC XML (``markup``), CSV (``tables``), COCO JSON (``coco``) and YOLO folders
(``yolo``); the checks of a ``.keras`` archive (``archive``); the ImageNet weights download
(``weights``) and other downloads and archives (``downloads``); heatmap overlays and
captioned copies of images (``overlays``). Nothing here imports the rest of ``helpers``
except its root (``warn``, ``progress_bar``)."""
