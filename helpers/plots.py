"""Plots for the series, in the style of scikit-learn's ``Display`` objects.

Every function takes keyword arguments, draws on the ``ax`` (or ``axes``) it is given and only
creates a figure when none is given, and returns what it drew on: a matplotlib ``Axes`` for a
single panel, or a :class:`PanelGrid` (``ax_`` = one axes per panel, ``figure_``) for several.
The numbers behind a plot come from :mod:`helpers.scan` and :mod:`helpers.evaluation`; this
module only draws. Nothing is saved here: notebooks call ``figure.savefig``.

Importing the module sets the seaborn theme once (:func:`set_theme`).
"""
import textwrap
import warnings
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from sklearn import metrics

from helpers import evaluation

_THEME_SET = False


def set_theme(force=False):
    """Apply the series' seaborn theme (white grid, readable font sizes) once.

    Parameters
    ----------
    force : bool, default=False
        Apply it again even if it was applied before (e.g. after ``plt.rcdefaults()``).

    Returns
    -------
    None
    """
    global _THEME_SET
    if _THEME_SET and not force:
        return
    sns.set_theme(context="notebook", style="whitegrid", palette="tab10",
                  rc={"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight",
                      "axes.titlesize": 11, "axes.titleweight": "bold"})
    _THEME_SET = True


set_theme()


@dataclass
class PanelGrid:
    """The axes of a multi-panel plot.

    Attributes
    ----------
    ax_ : np.ndarray of matplotlib Axes
        One axes per panel, in panel order (unused cells of the grid are hidden).
    figure_ : matplotlib Figure
        The figure holding them.
    """

    ax_: np.ndarray
    figure_: Figure

    def __len__(self):
        return len(self.ax_)

    def __iter__(self):
        return iter(self.ax_)

    def __getitem__(self, index):
        return self.ax_[index]


# --------------------------------------------------------------------------- plumbing
def _panels(n_panels, ncols, axes=None, panel_size=(3.0, 3.0)):
    """Return ``(flat axes, figure)`` for ``n_panels`` panels, creating a grid if needed."""
    if axes is not None:
        flat = np.ravel(np.asarray(axes, dtype=object))
        if len(flat) < n_panels:
            raise ValueError(f"axes: expected at least {n_panels} axes, got {len(flat)}")
        return flat[:max(n_panels, 1)], flat[0].figure
    n_panels = max(int(n_panels), 1)
    ncols = max(1, min(int(ncols), n_panels))
    nrows = -(-n_panels // ncols)
    figure, grid = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                                figsize=(panel_size[0] * ncols, panel_size[1] * nrows))
    flat = grid.ravel()
    for extra in flat[n_panels:]:
        extra.set_visible(False)
    return flat[:n_panels], figure


def _new_ax(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _as_series(values, name):
    if isinstance(values, pd.Series):
        return values
    if isinstance(values, dict):
        return pd.Series(values, dtype=float)
    raise ValueError(f"{name}: expected a pandas Series or a dict label → number, "
                     f"got {type(values).__name__}")


def _wrap(text, width=26, max_lines=3):
    return "\n".join(textwrap.wrap(text, width=width, max_lines=max_lines, placeholder=" …"))


def _join_labels(labels):
    if isinstance(labels, str):
        return labels
    labels = list(labels)
    return ", ".join(map(str, labels)) if labels else "(no label)"


def _show_image(ax, image, title=None, fontsize=9):
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=fontsize, fontweight="normal")


def _show_text(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, transform=ax.transAxes,
            wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _load_image(path, target_size):
    """Read an image with helpers.images, or return None (and warn) when it cannot be read."""
    from helpers.images import read_image  # imported late: plots must import without it

    try:
        return read_image(path, target_size=target_size)
    except (OSError, ValueError) as error:  # ImageError is a ValueError
        warnings.warn(f"{path}: not shown ({error})", stacklevel=3)
        return None


def _heatmap_ticks(ax, n_columns):
    """Horizontal row labels; slanted column labels when there are many."""
    ax.tick_params(axis="y", rotation=0)
    if n_columns > 6:
        ax.tick_params(axis="x", rotation=45)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    else:
        ax.tick_params(axis="x", rotation=0)


def _rotate_if_crowded(ax, labels):
    """Slant the x tick labels when they would not fit side by side."""
    labels = [str(label) for label in labels]
    font_size = matplotlib.rcParams["xtick.labelsize"]
    font_size = font_size if isinstance(font_size, (int, float)) else 11
    width_points = ax.get_position().width * ax.figure.get_size_inches()[0] * 72
    characters_that_fit = width_points / (0.6 * font_size)
    if sum(len(label) + 3 for label in labels) > characters_that_fit:
        ax.tick_params(axis="x", rotation=45)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")


def _palette(n_colors):
    return sns.color_palette("tab10" if n_colors <= 10 else "husl", n_colors)


def _curve_style(index, n_classes):
    """A colour and a line style per class, so more than 10 classes stay distinguishable."""
    return {"color": _palette(n_classes)[index],
            "linestyle": ("-", "--", ":", "-.")[(index // 10) % 4] if n_classes > 10 else "-",
            "linewidth": 1.6}


# --------------------------------------------------------------------------- data scan
def plot_label_counts(label_counts, *, n_images=None, ax=None, title="Images per label",
                      color=None):
    """Horizontal bars of how many images carry each label, with the counts on the bars.

    Parameters
    ----------
    label_counts : pd.Series or dict
        Label → number of images (e.g. ``helpers.scan.label_counts(df)``).
    n_images : int, optional
        Total number of images; when given, each bar also shows its share of the images.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    title : str, default="Images per label"
        Axes title.
    color : matplotlib colour, optional
        Bar colour.

    Returns
    -------
    matplotlib Axes
    """
    counts = _as_series(label_counts, "label_counts").sort_values(ascending=True)
    ax = _new_ax(ax, (7, 1.2 + 0.32 * max(len(counts), 2)))
    bars = ax.barh([str(label) for label in counts.index], counts.to_numpy(),
                   color=color or sns.color_palette()[0])
    texts = [f"{int(count):,}" if n_images is None else f"{int(count):,} ({count / n_images:.0%})"
             for count in counts.to_numpy()]
    ax.bar_label(bars, labels=texts, padding=3, fontsize=9)
    ax.set_xlim(0, (counts.max() if len(counts) else 1) * 1.2)
    ax.set_xlabel("images")
    ax.set_ylabel("label")
    ax.grid(axis="y", visible=False)
    ax.set_title(title)
    return ax


def plot_labels_per_image(labels_per_image, *, ax=None, title="Labels per image", color=None):
    """Bars of how many images have 0, 1, 2, … labels, with the counts on the bars.

    Parameters
    ----------
    labels_per_image : pd.Series, dict or array-like of int
        Either the number of labels of every image (one value per image), or an already
        counted distribution: a Series/dict whose index is the number of labels and whose
        values are numbers of images, with the index named ``"n_labels"`` (as
        ``helpers.scan.labels_per_image`` returns it) or given as a dict.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    title : str, default="Labels per image"
        Axes title.
    color : matplotlib colour, optional
        Bar colour.

    Returns
    -------
    matplotlib Axes
    """
    if isinstance(labels_per_image, dict) or (
            isinstance(labels_per_image, pd.Series)
            and labels_per_image.index.name in ("n_labels", "labels_per_image")):
        distribution = _as_series(labels_per_image, "labels_per_image").astype(int)
        distribution.index = distribution.index.astype(int)
    else:
        per_image = pd.Series(np.asarray(labels_per_image)).astype(int)
        distribution = per_image.value_counts()
    full_range = range(0, int(distribution.index.max()) + 1) if len(distribution) else range(1)
    distribution = distribution.reindex(full_range, fill_value=0).sort_index()
    ax = _new_ax(ax, (6, 3.5))
    bars = ax.bar(distribution.index.astype(str), distribution.to_numpy(),
                  color=color or sns.color_palette()[1])
    total = distribution.sum()
    ax.bar_label(bars, labels=[f"{count:,}\n({count / total:.0%})" if total else "0"
                               for count in distribution.to_numpy()], padding=2, fontsize=9)
    ax.set_ylim(0, max(distribution.max(), 1) * 1.25)
    ax.set_xlabel("labels in the image")
    ax.set_ylabel("images")
    ax.grid(axis="x", visible=False)
    ax.set_title(title)
    return ax


def plot_cooccurrence(cooccurrence_df, *, normalize=False, ax=None, annot=None, title=None):
    """Heatmap of how often two labels appear in the same image.

    Parameters
    ----------
    cooccurrence_df : pd.DataFrame
        Square label × label counts; the diagonal holds each label's image count
        (``helpers.scan.cooccurrence(df)``).
    normalize : bool, default=False
        Divide each row by its diagonal: the cell (row A, column B) then reads "share of the
        images with A that also have B".
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    annot : bool, optional
        Write the values in the cells; default: when there are at most 20 labels.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib Axes
    """
    if not isinstance(cooccurrence_df, pd.DataFrame) or \
            cooccurrence_df.shape[0] != cooccurrence_df.shape[1]:
        raise ValueError("cooccurrence_df: expected a square label × label DataFrame, got "
                         f"{type(cooccurrence_df).__name__} of shape "
                         f"{getattr(cooccurrence_df, 'shape', None)}")
    matrix = cooccurrence_df.astype(float)
    if normalize:
        diagonal = np.diag(matrix.to_numpy())
        matrix = matrix.div(np.where(diagonal > 0, diagonal, np.nan), axis=0)
    n_labels = len(matrix)
    annot = n_labels <= 20 if annot is None else annot
    side = min(2 + 0.55 * n_labels, 14)
    ax = _new_ax(ax, (side + 1.5, side))
    sns.heatmap(matrix, ax=ax, annot=annot, fmt=".0%" if normalize else ".0f",
                cmap="rocket_r", square=True, linewidths=0.5, linecolor="white",
                annot_kws={"fontsize": 8},
                cbar_kws={"label": "share of the row label's images" if normalize
                          else "images with both labels", "shrink": 0.8},
                vmin=0, vmax=1 if normalize else None)
    if normalize:
        ax.collections[0].colorbar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    _heatmap_ticks(ax, n_labels)
    ax.set_xlabel("…also has this label" if normalize else "label")
    ax.set_ylabel("images with this label…" if normalize else "label")
    ax.set_title(title or ("Co-occurrence (share of the row label)" if normalize
                           else "Co-occurrence (images with both labels)"))
    return ax


def plot_image_sizes(sizes_df, *, axes=None, bins=30):
    """Histograms of image width, height and aspect ratio (width / height), three panels.

    Parameters
    ----------
    sizes_df : pd.DataFrame
        Columns ``width`` and ``height`` (``helpers.scan.image_sizes(df)``); rows with a
        missing size (unreadable files) are left out.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    bins : int, default=30
        Histogram bins.

    Returns
    -------
    PanelGrid
        ``ax_`` = (width axes, height axes, aspect axes), ``figure_``.
    """
    missing = {"width", "height"} - set(getattr(sizes_df, "columns", []))
    if missing:
        raise ValueError(f"sizes_df: expected columns 'width' and 'height', missing {missing}")
    sizes = sizes_df[["width", "height"]].apply(pd.to_numeric, errors="coerce").dropna()
    sizes = sizes[(sizes["width"] > 0) & (sizes["height"] > 0)]
    values = {"width": sizes["width"], "height": sizes["height"],
              "aspect": sizes["width"] / sizes["height"]}
    flat, figure = _panels(3, 3, axes, panel_size=(3.6, 3.0))
    palette = sns.color_palette()
    for ax, (name, column), color in zip(flat, values.items(), palette[2:5]):
        if len(column):
            sns.histplot(column.to_numpy(), bins=bins, ax=ax, color=color)
            median = float(column.median())
            ax.axvline(median, color="black", linestyle="--", linewidth=1)
            ax.set_title(f"{name}: median {median:.2f}" if name == "aspect"
                         else f"{name}: median {median:.0f} px")
        else:
            _show_text(ax, "no readable sizes")
            ax.set_title(name)
        ax.set_xlabel("width / height" if name == "aspect" else f"{name} (pixels)")
        ax.set_ylabel("images")
    if axes is None:
        figure.suptitle(f"Image sizes of {len(sizes):,} images")
    return PanelGrid(flat, figure)


def plot_sample_grid(dataframe, *, n=16, ncols=4, target_size=None, seed=0, x_col="filename",
                     y_col="labels", axes=None):
    """A grid of randomly chosen images with their labels as titles.

    Parameters
    ----------
    dataframe : pd.DataFrame
        One row per image: ``x_col`` (path) and ``y_col`` (list of labels).
    n : int, default=16
        Number of images (all of them if the DataFrame is smaller).
    ncols : int, default=4
        Panels per row.
    target_size : (height, width), optional
        Resize every image, e.g. to show what the model sees; original size when None.
    seed : int, default=0
        Which images are drawn.
    x_col, y_col : str
        Column names of the path and the labels.
    axes : sequence of matplotlib Axes, optional
        Where to draw; a new figure is created when None.

    Returns
    -------
    PanelGrid
    """
    for column in (x_col, y_col):
        if column not in dataframe.columns:
            raise ValueError(f"dataframe: expected a column {column!r}, "
                             f"got columns {list(dataframe.columns)}")
    sample = dataframe.sample(n=min(int(n), len(dataframe)), random_state=seed)
    flat, figure = _panels(len(sample), ncols, axes, panel_size=(2.6, 2.9))
    for ax, (_, row) in zip(flat, sample.iterrows()):
        image = _load_image(row[x_col], target_size)
        title = _wrap(_join_labels(row[y_col]))
        if image is None:
            _show_text(ax, "unreadable image")
            ax.set_title(title, fontsize=9, fontweight="normal")
        else:
            _show_image(ax, image, title)
    return PanelGrid(flat, figure)


def plot_augmented_batch(originals, augmented, *, labels=None, axes=None):
    """Images before (first row) and after augmentation (one row per augmented version).

    Parameters
    ----------
    originals : array-like (n, height, width, 3) in [0, 1]
        The images as the pipeline yields them.
    augmented : array-like (n, height, width, 3) or (k, n, height, width, 3) in [0, 1]
        The same images after augmentation, once or ``k`` times.
    labels : list, optional
        One title per column (a string or a list of labels).
    axes : 2-D array of matplotlib Axes, optional
        ``(1 + k, n)`` axes to draw on; a new figure is created when None.

    Returns
    -------
    PanelGrid
        ``ax_`` row by row: the originals first.
    """
    originals = np.asarray(originals, dtype=float)
    augmented = np.asarray(augmented, dtype=float)
    if augmented.ndim == 4:
        augmented = augmented[None]
    if originals.ndim != 4 or augmented.shape[1:] != originals.shape:
        raise ValueError("originals and augmented: expected shapes (n, h, w, 3) and "
                         "(n, h, w, 3) or (k, n, h, w, 3), got "
                         f"{originals.shape} and {np.asarray(augmented).shape}")
    for name, array in (("originals", originals), ("augmented", augmented)):
        if array.size and (array.min() < -0.01 or array.max() > 1.01):
            raise ValueError(f"{name}: expected pixel values in [0, 1], got "
                             f"[{array.min():.3g}, {array.max():.3g}] (divide by 255?)")
    rows = [originals, *augmented]
    n_images = originals.shape[0]
    if labels is not None and len(labels) != n_images:
        raise ValueError(f"labels: expected {n_images} entries (one per image), got {len(labels)}")
    flat, figure = _panels(len(rows) * n_images, n_images, axes, panel_size=(2.2, 2.3))
    for row_index, images in enumerate(rows):
        for column, image in enumerate(images):
            ax = flat[row_index * n_images + column]
            title = _wrap(_join_labels(labels[column]), 22) if labels is not None and \
                row_index == 0 else None
            _show_image(ax, np.clip(image, 0, 1), title)
            if column == 0:
                ax.set_ylabel("original" if row_index == 0 else
                              "augmented" if len(rows) == 2 else f"augmented {row_index}")
    return PanelGrid(flat, figure)


def _history_frame(history):
    if hasattr(history, "history"):  # a keras.callbacks.History
        history = history.history
    if isinstance(history, dict):
        history = pd.DataFrame(history)
    if not isinstance(history, pd.DataFrame):
        raise ValueError("history: expected a DataFrame (history.csv), a dict or a Keras "
                         f"History, got {type(history).__name__}")
    history = history.copy()
    if "epoch" in history.columns:
        history.index = history.pop("epoch").astype(int) + 1  # CSVLogger counts from 0
    else:
        history.index = np.arange(1, len(history) + 1)
    history.index.name = "epoch"
    return history


def plot_history(history, *, metrics=None, axes=None, ncols=None):
    """Training and validation curves, one panel per metric.

    Parameters
    ----------
    history : pd.DataFrame, dict or keras.callbacks.History
        Per-epoch values, e.g. ``pd.read_csv("history.csv")`` or ``model.fit(...)``'s return.
    metrics : sequence of str, optional
        Metric names without the ``val_`` prefix; default: every metric, loss first.
    axes : sequence of matplotlib Axes, optional
        One axes per metric; a new figure is created when None.
    ncols : int, optional
        Panels per row (default: all in one row, up to 4).

    Returns
    -------
    PanelGrid
        One axes per metric; the loss panel marks the epoch with the lowest validation loss.
    """
    frame = _history_frame(history)
    skip = {"learning_rate", "lr"}
    if metrics is None:
        metrics = [column for column in frame.columns
                   if not column.startswith("val_") and column not in skip]
        metrics.sort(key=lambda name: name != "loss")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [name for name in metrics
               if name not in frame.columns and f"val_{name}" not in frame.columns]
    if unknown:
        raise ValueError(f"metrics: {unknown} not in the history, which has "
                         f"{list(frame.columns)}")
    flat, figure = _panels(len(metrics), ncols or min(len(metrics), 4), axes,
                           panel_size=(4.0, 3.2))
    palette = sns.color_palette()
    marker = "o" if len(frame) <= 30 else None
    for ax, name in zip(flat, metrics):
        for column, label, color in ((name, "train", palette[0]),
                                     (f"val_{name}", "validation", palette[1])):
            if column in frame.columns:
                ax.plot(frame.index, frame[column], marker=marker, markersize=4, label=label,
                        color=color)
        if name == "loss" and "val_loss" in frame.columns and frame["val_loss"].notna().any():
            best = frame["val_loss"].idxmin()
            ax.axvline(best, color="grey", linestyle=":", linewidth=1,
                       label=f"best val_loss (epoch {best})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name.replace("_", " "))
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=8)
    return PanelGrid(flat, figure)


# --------------------------------------------------------------------------- post-mortem
def plot_confusion_grid(y_true, y_pred, classes, *, ncols=4, axes=None):
    """One 2×2 confusion matrix per class, titled with the class's F1, recall and precision.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_pred : array-like (n_samples, n_classes)
        0/1 predictions (``helpers.evaluation.apply_thresholds``).
    classes : list of str
        Class names, one per column.
    ncols : int, default=4
        Panels per row.
    axes : sequence of matplotlib Axes, optional
        One axes per class; a new figure is created when None.

    Returns
    -------
    PanelGrid
        One panel per class; each cell shows the count and its share of all samples.
    """
    truth, predictions, classes = evaluation._check_pair(y_true, y_pred, "y_pred", classes)
    matrices = metrics.multilabel_confusion_matrix(truth, predictions)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        truth, predictions, average=None, zero_division=0)
    n_samples = max(truth.shape[0], 1)
    flat, figure = _panels(len(classes), ncols, axes, panel_size=(2.9, 2.8))
    for index, (ax, label, matrix) in enumerate(zip(flat, classes, matrices)):
        cells = [[f"{count:,}\n{count / n_samples:.0%}" for count in row] for row in matrix]
        sns.heatmap(matrix, ax=ax, annot=np.array(cells), fmt="", cbar=False, cmap="Blues",
                    square=True, linewidths=1, linecolor="white", annot_kws={"fontsize": 9},
                    xticklabels=["no", "yes"], yticklabels=["no", "yes"], vmin=0)
        ax.set_xlabel("predicted", fontsize=9)
        ax.set_ylabel("true", fontsize=9)
        ax.tick_params(labelsize=8, rotation=0)
        ax.set_title(f"{label}\nF1 {f1[index]:.2f} · R {recall[index]:.2f} · "
                     f"P {precision[index]:.2f}", fontsize=10)
    if axes is None:
        figure.suptitle("Per-class confusion matrices (cells: count, share of all images)")
    return PanelGrid(flat, figure)


def _skipped_entry(ax, label, reason):
    ax.plot([], [], " ", label=f"{label}: skipped ({reason})")


def _legend(ax, n_entries, loc):
    if n_entries > 12:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    else:
        ax.legend(fontsize=8, loc=loc)


def _per_class_curves(display, y_true, y_prob, classes, ax, micro_average):
    """Draw one scikit-learn ``display`` curve per class (and the micro average) on ``ax``."""
    truth, probabilities, classes = evaluation._check_pair(y_true, y_prob, "y_prob", classes)
    ax = _new_ax(ax, (6.5, 5.5))
    for index, label in enumerate(classes):
        reason = evaluation.undefined_reason(truth[:, index])
        if reason:
            _skipped_entry(ax, label, reason)
            continue
        display.from_predictions(
            truth[:, index], probabilities[:, index], name=label, ax=ax,
            curve_kwargs=_curve_style(index, len(classes)))
    if micro_average and evaluation.undefined_reason(truth.ravel()) is None:
        display.from_predictions(
            truth.ravel(), probabilities.ravel(), name="micro-average", ax=ax,
            curve_kwargs={"color": "black", "linestyle": "--", "linewidth": 2.2})
    return ax, classes


def plot_pr_curves(y_true, y_prob, classes, *, ax=None, micro_average=False):
    """Precision-recall curves, one per class, with the average precision in the legend.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    micro_average : bool, default=False
        Also draw the micro-averaged curve (all sample-label pairs pooled).

    Returns
    -------
    matplotlib Axes
        Classes with a single truth value have no curve and a "skipped" legend entry.
    """
    ax, classes = _per_class_curves(metrics.PrecisionRecallDisplay, y_true, y_prob, classes, ax, micro_average)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.03)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curves")
    _legend(ax, len(classes) + micro_average, "lower left")
    return ax


def plot_roc_curves(y_true, y_prob, classes, *, ax=None, micro_average=False):
    """ROC curves, one per class, with the ROC-AUC in the legend and the chance diagonal.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    micro_average : bool, default=False
        Also draw the micro-averaged curve (all sample-label pairs pooled).

    Returns
    -------
    matplotlib Axes
        Classes with a single truth value have no curve and a "skipped" legend entry.
    """
    ax, classes = _per_class_curves(metrics.RocCurveDisplay, y_true, y_prob, classes, ax, micro_average)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1,
            label="chance (AUC = 0.50)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title("ROC curves")
    _legend(ax, len(classes) + micro_average + 1, "lower right")
    return ax


def plot_threshold_curves(y_true, y_prob, classes, *, thresholds=None, ncols=4, axes=None):
    """F1, precision and recall against the threshold, one panel per class.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth (the data the thresholds are tuned on, usually validation).
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    thresholds : array-like (n_classes,), optional
        Tuned thresholds to mark; default: ``helpers.evaluation.tune_thresholds`` (best F1).
    ncols : int, default=4
        Panels per row.
    axes : sequence of matplotlib Axes, optional
        One axes per class; a new figure is created when None.

    Returns
    -------
    PanelGrid
        One panel per class; the title compares F1 at 0.5 with F1 at the tuned threshold.
    """
    truth, probabilities, classes = evaluation._check_pair(y_true, y_prob, "y_prob", classes)
    if thresholds is None:
        thresholds = evaluation.tune_thresholds(truth, probabilities)
    thresholds = evaluation._check_thresholds(thresholds, len(classes))
    f1_default = metrics.f1_score(truth, evaluation.apply_thresholds(probabilities),
                                  average=None, zero_division=0)
    f1_tuned = metrics.f1_score(truth, evaluation.apply_thresholds(probabilities, thresholds),
                                average=None, zero_division=0)
    palette = sns.color_palette()
    flat, figure = _panels(len(classes), ncols, axes, panel_size=(3.2, 2.8))
    legend_drawn = False
    for index, (ax, label) in enumerate(zip(flat, classes)):
        curve = evaluation.threshold_curve(truth[:, index], probabilities[:, index])
        ax.set_ylim(0, 1.05)
        if curve.empty:
            ax.set_xlim(0, 1)
            _show_text(ax, f"no positive example:\nthreshold stays {thresholds[index]:.2f}")
            ax.set_title(label, fontsize=10)
            continue
        # Below the lowest score every image is positive; above the highest, none is.
        first, highest = curve.iloc[0], curve["threshold"].iloc[-1]
        steps = pd.concat([
            pd.DataFrame({"threshold": [0.0], "precision": [first["precision"]],
                          "recall": [first["recall"]], "f1": [first["f1"]]}),
            curve[curve["threshold"] > 0],
            pd.DataFrame({"threshold": [1.0], "precision": [np.nan], "recall": [0.0],
                          "f1": [0.0]}) if highest < 1 else None,
        ], ignore_index=True)
        for column, color, width in (("f1", palette[3], 2.2), ("precision", palette[0], 1.2),
                                     ("recall", palette[2], 1.2)):
            ax.step(steps["threshold"], steps[column], where="pre", color=color,
                    linewidth=width, label=column)
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=1, label="0.5")
        ax.axvline(thresholds[index], color="black", linestyle="--", linewidth=1.2,
                   label="tuned")
        # Zoom on where the scores are when the model squeezes them into a narrow band.
        low = min(curve["threshold"].min(), 0.5, thresholds[index])
        high = max(highest, 0.5, thresholds[index])
        margin = max(0.02, 0.08 * (high - low))
        ax.set_xlim(max(0.0, low - margin), min(1.0, high + margin))
        ax.set_xlabel("threshold", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_title(f"{label}\nF1 {f1_default[index]:.2f} at 0.5 → {f1_tuned[index]:.2f} at "
                     f"{thresholds[index]:.2f}", fontsize=10)
        if not legend_drawn:
            ax.legend(fontsize=7, loc="best")
            legend_drawn = True
    if axes is None:
        figure.suptitle("F1, precision and recall against the threshold")
    return PanelGrid(flat, figure)


def plot_error_gallery(filenames, y_true, y_prob, classes, *, kind="false_positive", n=8,
                       thresholds=0.5, ncols=4, target_size=None, axes=None):
    """The most confident mistakes of one kind, worst first, with their labels.

    Parameters
    ----------
    filenames : sequence of str
        Image paths, one per row of ``y_true``.
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    kind : {"false_positive", "false_negative"}, default="false_positive"
        Which mistakes to show: labels predicted but absent, or present but missed.
    n : int, default=8
        Number of images (one panel per image: its worst mistake of this kind).
    thresholds : float or array-like (n_classes,), default=0.5
        Thresholds turning probabilities into predictions.
    ncols : int, default=4
        Panels per row.
    target_size : (height, width), optional
        Resize the images for display.
    axes : sequence of matplotlib Axes, optional
        Where to draw; a new figure is created when None.

    Returns
    -------
    PanelGrid
        Titles: the mistaken label and its probability, the true labels, and the predicted
        labels with their probabilities.
    """
    filenames = list(filenames)
    truth, probabilities, classes = evaluation._check_pair(y_true, y_prob, "y_prob", classes)
    if len(filenames) != truth.shape[0]:
        raise ValueError(f"filenames: expected {truth.shape[0]} paths (one per row of y_true), "
                         f"got {len(filenames)}")
    errors = evaluation.worst_errors(truth, probabilities, classes, kind=kind, n=n,
                                     thresholds=thresholds)
    word = "false positive" if kind == "false_positive" else "missed"
    flat, figure = _panels(len(errors), ncols, axes, panel_size=(3.0, 3.6))
    if errors.empty:
        _show_text(flat[0], f"no {word.replace('missed', 'false negative')} at these thresholds")
        return PanelGrid(flat, figure)
    column_of = {label: index for index, label in enumerate(classes)}
    for ax, error in zip(flat, errors.itertuples()):
        row = probabilities[error.sample]
        # a no-break space keeps each label next to its probability when the title wraps
        predicted = ", ".join(f"{label}\u00a0{row[column_of[label]]:.2f}"
                              for label in error.predicted_labels) or "(nothing)"
        title = (f"{word}: {error.label} {error.probability:.2f}\n"
                 f"{_wrap('true: ' + _join_labels(error.true_labels), 34, 2)}\n"
                 f"{_wrap('pred: ' + predicted, 34, 2)}")
        image = _load_image(filenames[error.sample], target_size)
        if image is None:
            _show_text(ax, "unreadable image")
            ax.set_title(title, fontsize=8, fontweight="normal", loc="left")
        else:
            _show_image(ax, image)
            ax.set_title(title, fontsize=8, fontweight="normal", loc="left")
    if axes is None:
        figure.suptitle("Most confident false positives" if kind == "false_positive"
                        else "Most confidently missed labels (false negatives)")
    return PanelGrid(flat, figure)


def plot_error_pairs(y_true, y_pred, classes, *, kind="false_positive", normalize=False,
                     ax=None, annot=None):
    """Heatmap of which labels were in the images where a label was wrongly predicted or missed.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_pred : array-like (n_samples, n_classes)
        0/1 predictions (``helpers.evaluation.apply_thresholds``).
    classes : list of str
        Class names, one per column.
    kind : {"false_positive", "false_negative"}, default="false_positive"
        False positives: row = label predicted but absent, column = a true label of those
        images. False negatives: row = label missed, column = a label predicted instead.
        The ``(none)`` column counts images with no such label.
    normalize : bool, default=False
        Show each cell as a share of the row's errors instead of a count.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    annot : bool, optional
        Write the values in the cells; default: when there are at most 20 labels.

    Returns
    -------
    matplotlib Axes
    """
    pairs = evaluation.error_pairs(y_true, y_pred, classes, kind=kind)
    truth, predictions, _ = evaluation._check_pair(y_true, y_pred, "y_pred")
    wrong_value = 1 if kind == "false_positive" else 0
    errors_per_label = ((predictions == wrong_value) & (truth != wrong_value)).sum(axis=0)
    values = pairs.astype(float)
    if normalize:
        values = values.div(np.where(errors_per_label > 0, errors_per_label, np.nan), axis=0)
    values.index = [f"{label} ({count})" for label, count in zip(pairs.index, errors_per_label)]
    values.index.name = f"{pairs.index.name} (errors)"
    n_labels = len(values)
    annot = n_labels <= 20 if annot is None else annot
    side = min(2.5 + 0.55 * n_labels, 14)
    ax = _new_ax(ax, (side + 2.5, side))
    sns.heatmap(values, ax=ax, annot=annot, fmt=".0%" if normalize else ".0f",
                cmap="Blues" if kind == "false_positive" else "Oranges", linewidths=0.5,
                linecolor="white", annot_kws={"fontsize": 8}, vmin=0,
                vmax=1 if normalize else None,
                cbar_kws={"label": "share of the row's errors" if normalize else "images",
                          "shrink": 0.8})
    _heatmap_ticks(ax, n_labels + 1)
    ax.set_title("False positives: the true labels of those images" if kind == "false_positive"
                 else "False negatives: what was predicted instead")
    return ax


def plot_metric_comparison(table, metric, *, x="class", hue="model", ax=None, annotate=True,
                           title=None):
    """Grouped bars of one metric, e.g. per class (``x``) for several models (``hue``).

    Parameters
    ----------
    table : pd.DataFrame or dict of name → pd.DataFrame
        A tidy table with columns ``x``, ``metric`` and (optionally) ``hue``. A dict of tables
        indexed by ``x`` (e.g. ``{"SmallVGGNet": classification_table(...), ...}``) is
        stacked first, its keys becoming the ``hue`` column.
    metric : str
        Column to compare, e.g. ``"f1"`` or ``"average_precision"``.
    x : str, default="class"
        Column for the groups along the x axis.
    hue : str or None, default="model"
        Column for the bars inside a group; None (or a missing column) draws one bar per group.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    annotate : bool, default=True
        Write each bar's value on it (when there are at most 40 bars).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib Axes
    """
    if isinstance(table, dict):
        for name, frame in table.items():
            if metric not in getattr(frame, "columns", []):
                raise ValueError(f"table[{name!r}]: expected a column {metric!r}, got "
                                 f"{list(getattr(frame, 'columns', []))}")
        table = pd.concat({str(name): frame[[metric]] for name, frame in table.items()},
                          names=[hue or "model", x]).reset_index()
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table: expected a DataFrame or a dict of DataFrames, got "
                         f"{type(table).__name__}")
    table = table.reset_index() if x not in table.columns and x == table.index.name else table
    for column in (x, metric):
        if column not in table.columns:
            raise ValueError(f"table: expected a column {column!r}, got {list(table.columns)}")
    hue = hue if hue in table.columns else None
    n_groups = table[x].nunique()
    n_hues = table[hue].nunique() if hue else 1
    ax = _new_ax(ax, (min(max(6.0, 1.2 + 0.45 * n_groups * n_hues + 0.3 * n_groups), 16), 4.2))
    data = table.assign(**{metric: pd.to_numeric(table[metric], errors="coerce")})
    sns.barplot(data=data, x=x, y=metric, hue=hue, ax=ax, errorbar=None,
                palette="Set2" if hue else None, color=None if hue else sns.color_palette()[0])
    if annotate and n_groups * n_hues <= 40:
        for container in ax.containers:
            ax.bar_label(container, labels=["" if np.isnan(value) else f"{value:.2f}"
                                            for value in container.datavalues],
                         fontsize=7, padding=1, rotation=90 if n_hues > 2 else 0)
    upper = data[metric].max()
    if pd.notna(upper) and upper <= 1:
        ax.set_ylim(0, 1.12)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_xlabel(x)
    ax.grid(axis="x", visible=False)
    _rotate_if_crowded(ax, [tick.get_text() for tick in ax.get_xticklabels()])
    if hue:
        ax.legend(title=hue, fontsize=8, title_fontsize=9, loc="upper left",
                  bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.set_title(title or f"{metric.replace('_', ' ')} by {x}")
    return ax
