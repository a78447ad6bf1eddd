"""Small data and models shared by several test modules."""
import keras
import numpy as np
from PIL import Image

from helpers import models, training

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def tiny_arrays(n=48, size=16, n_classes=3, seed=0):
    """Images whose label k lights up channel k: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, n_classes)) < 0.5).astype("float32")
    images = rng.random((n, size, size, 3)).astype("float32") * 0.3
    for k in range(min(n_classes, 3)):
        images[labels[:, k] == 1, :, :, k] += 0.6
    return images, labels


def make_fashion_folders(root, per_folder=8, size=20, broken=True, seed=0):
    """``colour_item`` folders (split-folders layout) of tiny PNGs, plus one broken file."""
    rng = np.random.default_rng(seed)
    for colour, rgb in COLOURS.items():
        for item in ("shirt", "shoe"):
            folder = root / f"{colour}_{item}"
            folder.mkdir(parents=True)
            for index in range(per_folder):
                pixels = np.full((size, size, 3), 255, dtype=np.int16)
                if item == "shirt":
                    pixels[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = rgb
                else:
                    pixels[size // 2:, :] = rgb
                pixels -= rng.integers(0, 40, pixels.shape)
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{index}.png")
    if broken:
        (root / "red_shirt" / "broken.jpg").write_bytes(b"this is not a picture")
    return root


def compiled_mlp(n_classes=3, size=8, seed=0):
    keras.utils.set_random_seed(seed)
    model = models.build_mlp((size, size, 3), n_classes, final_activation="sigmoid")
    return training.compile_model(model, learning_rate=1e-3)


CLASSES = ["blue", "red", "shirt", "shoe"]
SIZE = (16, 16)


def save_model_folder(model_dir, classes=CLASSES, size=SIZE, task="multi_label",
                      thresholds=(0.45, 0.5, 0.55, 0.5), seed=0):
    """An untrained MLP saved as a model folder (its outputs differ per image all the same)."""
    from helpers import artefacts

    keras.utils.set_random_seed(seed)
    activation = "sigmoid" if task == "multi_label" else "softmax"
    model = models.build_mlp((*size, 3), len(classes), final_activation=activation)
    artefacts.save_artefacts(model_dir, model, list(classes), task, size,
                             thresholds=thresholds if task == "multi_label" else None)
    return model
