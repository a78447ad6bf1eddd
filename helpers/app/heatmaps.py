"""``helpers predict --explain``: predictions with a heatmap overlay per predicted label."""
import os
from pathlib import Path

from helpers import warn
from helpers.artefacts import load_artefacts
from helpers.explain import GradCAM, explain_files
from helpers.files.overlays import write_overlays
from helpers.predict import predict_paths


def explain_paths(model_dir_or_loaded, paths, out_dir, batch_size=32, thresholds=None,
                  layer=None, method="hirescam"):
    """``helpers.predict.predict_paths``' results, each with ``explanations``: an overlay PNG
    per predicted label written to ``out_dir`` (``helpers.files.overlays.write_overlays``), or
    None for an image that could not be read. ``layer`` and ``method`` are ``GradCAM``'s."""
    loaded = (load_artefacts(model_dir_or_loaded)
              if isinstance(model_dir_or_loaded, (str, os.PathLike)) else model_dir_or_loaded)
    results = predict_paths(loaded, paths, batch_size=batch_size, thresholds=thresholds)
    cam = GradCAM(loaded[0], layer=layer, classes=loaded[1]["classes"], method=method)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    good = [(number, result) for number, result in enumerate(results) if result["error"] is None]
    for result in results:
        result["explanations"] = None
    for start in range(0, len(good), batch_size):  # the heatmaps of one batch at a time
        chunk = good[start:start + batch_size]
        table = explain_files(cam, [result["path"] for _, result in chunk],
                              [result["labels"] for _, result in chunk], batch_size)
        for item in table.attrs["skipped"]:
            warn(f"{item['path']}: not explained ({item['reason']})")
        unread = {item["path"] for item in table.attrs["skipped"]}
        for image, (number, result) in enumerate(chunk):
            if result["path"] not in unread:
                out_stem = Path(out_dir) / f"{number:05d}_{Path(result['path']).stem}"
                result["explanations"] = write_overlays(
                    result["path"], table[table["image"] == image], out_stem, cam.classes)
    return results
