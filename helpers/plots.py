"""Plots for the series, in the style of scikit-learn's ``Display`` objects.

Every public function takes keyword arguments, draws on the ``ax`` it is given (one Axes,
or a sequence of them for several panels) and creates a figure only when none is given,
and returns a :class:`Display` holding ``figure_``, ``ax_`` and ``axes_``. Extra keyword
arguments go to the matplotlib (or seaborn) call that draws the data, so ``color=``,
``alpha=``, ``linewidth=``... work as usual.

The numbers behind a plot come from :mod:`helpers.scan` and :mod:`helpers.evaluation`; this
module only draws. Nothing is saved here (``Display.savefig``, or ``nb.save`` in the
notebooks), and importing it changes no matplotlib setting: :func:`set_theme` applies the
series' look when called.
"""
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator, PercentFormatter

from helpers import evaluation, scan, warn


def set_theme():
    """Apply the series' seaborn theme: white grid, readable fonts, bold titles, tight saving."""
    sns.set_theme(context="notebook", style="whitegrid", palette="tab10",
                  rc={"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight",
                      "axes.titlesize": 11, "axes.titleweight": "bold"})


class Display:
    """What a plot function drew, in scikit-learn's Display style.

    Attributes
    ----------
    figure_ : matplotlib Figure
        The figure holding the plot.
    axes_ : np.ndarray of matplotlib Axes
        Every panel, in panel order (one element for a single-panel plot).
    ax_ : matplotlib Axes or np.ndarray
        The Axes of a single-panel plot; for several panels, the same array as ``axes_``.

    Iterating over a Display, ``len()`` and indexing go over ``axes_``.
    """

    def __init__(self, axes, figure=None):
        flat = np.empty(len(np.ravel(np.asarray(axes, dtype=object))), dtype=object)
        flat[:] = list(np.ravel(np.asarray(axes, dtype=object)))
        self.axes_ = flat
        self.figure_ = figure if figure is not None else flat[0].figure
        self.ax_ = flat[0] if len(flat) == 1 else flat

    def __len__(self):
        return len(self.axes_)

    def __iter__(self):
        return iter(self.axes_)

    def __getitem__(self, index):
        return self.axes_[index]

    def savefig(self, *args, **kwargs):
        """``figure_.savefig(...)``."""
        return self.figure_.savefig(*args, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}({len(self.axes_)} axes)"




# --------------------------------------------------------------------------- plumbing
def _one_ax(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _panels(n_panels, ncols, ax=None, panel_size=(3.0, 3.0)):
    """Return ``(flat axes, figure)`` for ``n_panels`` panels, creating a grid if needed."""
    if ax is not None:
        flat = np.ravel(np.asarray(ax, dtype=object))
        if len(flat) < n_panels:
            raise ValueError(f"ax: expected at least {n_panels} axes, got {len(flat)}")
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


def _show_image(ax, image, title=None, fontsize=9, **kwargs):
    ax.imshow(image, **kwargs)
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
    """Read an image with helpers.files.images, or return None (and warn) when it cannot be read."""
    from helpers.files.images import read_image  # Pillow only, but only the galleries need it

    try:
        return read_image(path, target_size=target_size)
    except (OSError, ValueError) as error:  # ImageError is a ValueError
        warn(f"{path}: not shown ({error})")
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
    font_size = plt.rcParams["xtick.labelsize"]
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


def _legend_outside(ax, **kwargs):
    """A legend to the right of the axes, so that it hides no curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kwargs)


# --------------------------------------------------------------------------- data scan
def plot_label_counts(label_counts, *, n_images=None, ax=None, title="Images per label",
                      **kwargs):
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
    **kwargs
        Passed to ``Axes.barh`` (``color=``...).

    Returns
    -------
    Display
    """
    counts = _as_series(label_counts, "label_counts").sort_values(ascending=True)
    ax = _one_ax(ax, (7, 1.2 + 0.32 * max(len(counts), 2)))
    kwargs.setdefault("color", sns.color_palette()[0])
    bars = ax.barh([str(label) for label in counts.index], counts.to_numpy(), **kwargs)
    texts = [f"{int(count):,}" if n_images is None else f"{int(count):,} ({count / n_images:.0%})"
             for count in counts.to_numpy()]
    ax.bar_label(bars, labels=texts, padding=3, fontsize=9)
    ax.set_xlim(0, (counts.max() if len(counts) else 1) * 1.2)
    ax.set_xlabel("images")
    ax.set_ylabel("label")
    ax.grid(axis="y", visible=False)
    ax.set_title(title)
    return Display(ax)


def plot_labels_per_image(labels_per_image, *, ax=None, title="Labels per image", **kwargs):
    """Bars of how many images have 0, 1, 2, … labels, with the counts on the bars.

    Parameters
    ----------
    labels_per_image : pd.Series, dict or array-like of int
        The distribution as ``helpers.scan.labels_per_image`` returns it (index
        ``n_labels``, values = numbers of images) or as a dict, or else the number of
        labels of every image (one value per image).
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    title : str, default="Labels per image"
        Axes title.
    **kwargs
        Passed to ``Axes.bar``.

    Returns
    -------
    Display
    """
    if isinstance(labels_per_image, dict) or (
            isinstance(labels_per_image, pd.Series)
            and labels_per_image.index.name in ("n_labels", "labels_per_image")):
        distribution = _as_series(labels_per_image, "labels_per_image").astype(int)
        distribution.index = distribution.index.astype(int)
    else:
        distribution = pd.Series(np.asarray(labels_per_image)).astype(int).value_counts()
    full_range = range(0, int(distribution.index.max()) + 1) if len(distribution) else range(1)
    distribution = distribution.reindex(full_range, fill_value=0).sort_index()
    ax = _one_ax(ax, (6, 3.5))
    kwargs.setdefault("color", sns.color_palette()[1])
    bars = ax.bar(distribution.index.astype(str), distribution.to_numpy(), **kwargs)
    total = distribution.sum()
    ax.bar_label(bars, labels=[f"{count:,}\n({count / total:.0%})" if total else "0"
                               for count in distribution.to_numpy()], padding=2, fontsize=9)
    ax.set_ylim(0, max(distribution.max(), 1) * 1.25)
    ax.set_xlabel("labels in the image")
    ax.set_ylabel("images")
    ax.grid(axis="x", visible=False)
    ax.set_title(title)
    return Display(ax)


def plot_cooccurrence(cooccurrence_df, *, normalize=False, ax=None, annot=None, title=None,
                      **kwargs):
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
    **kwargs
        Passed to ``seaborn.heatmap`` (``cmap=``...).

    Returns
    -------
    Display
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
    ax = _one_ax(ax, (side + 1.5, side))
    options = dict(annot=annot, fmt=".0%" if normalize else ".0f", cmap="rocket_r", square=True,
                   linewidths=0.5, linecolor="white", annot_kws={"fontsize": 8},
                   cbar_kws={"label": "share of the row label's images" if normalize
                             else "images with both labels", "shrink": 0.8},
                   vmin=0, vmax=1 if normalize else None)
    sns.heatmap(matrix, ax=ax, **{**options, **kwargs})
    if normalize and ax.collections and ax.collections[0].colorbar is not None:
        ax.collections[0].colorbar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    _heatmap_ticks(ax, n_labels)
    ax.set_xlabel("…also has this label" if normalize else "label")
    ax.set_ylabel("images with this label…" if normalize else "label")
    ax.set_title(title or ("Co-occurrence (share of the row label)" if normalize
                           else "Co-occurrence (images with both labels)"))
    return Display(ax)


def plot_image_sizes(sizes_df, *, ax=None, bins=30, **kwargs):
    """Histograms of image width, height and aspect ratio (width / height), three panels.

    Parameters
    ----------
    sizes_df : pd.DataFrame
        Columns ``width`` and ``height`` (``helpers.scan.image_sizes(df)``); rows with a
        missing size (unreadable files) are left out.
    ax : sequence of 3 matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    bins : int, default=30
        Histogram bins.
    **kwargs
        Passed to ``seaborn.histplot``.

    Returns
    -------
    Display
        ``axes_`` = (width, height, aspect); each title gives the median from
        ``helpers.scan.size_summary``.
    """
    missing = {"width", "height"} - set(getattr(sizes_df, "columns", []))
    if missing:
        raise ValueError(f"sizes_df: expected columns 'width' and 'height', missing {missing}")
    summary = scan.size_summary(sizes_df)
    sizes = sizes_df[["width", "height"]].apply(pd.to_numeric, errors="coerce").dropna()
    sizes = sizes[(sizes["width"] > 0) & (sizes["height"] > 0)]
    values = {"width": sizes["width"], "height": sizes["height"],
              "aspect": sizes["width"] / sizes["height"]}
    flat, figure = _panels(3, 3, ax, panel_size=(3.6, 3.0))
    palette = sns.color_palette()
    for axis, (name, column), color in zip(flat, values.items(), palette[2:5]):
        if len(column):
            sns.histplot(column.to_numpy(), bins=bins, ax=axis, **{"color": color, **kwargs})
            median = summary[name]["median"]
            axis.axvline(median, color="black", linestyle="--", linewidth=1)
            axis.set_title(f"{name}: median {median:.2f}" if name == "aspect"
                           else f"{name}: median {median:.0f} px")
        else:
            _show_text(axis, "no readable sizes")
            axis.set_title(name)
        axis.set_xlabel("width / height" if name == "aspect" else f"{name} (pixels)")
        axis.set_ylabel("images")
    if ax is None:
        figure.suptitle(f"Image sizes of {summary['n_read']:,} images")
    return Display(flat, figure)


def plot_sample_grid(dataframe, *, n=16, ncols=4, target_size=None, seed=0, x_col="filename",
                     y_col="labels", ax=None, **kwargs):
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
    ax : sequence of matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    **kwargs
        Passed to ``Axes.imshow``.

    Returns
    -------
    Display
    """
    for column in (x_col, y_col):
        if column not in dataframe.columns:
            raise ValueError(f"dataframe: expected a column {column!r}, "
                             f"got columns {list(dataframe.columns)}")
    sample = dataframe.sample(n=min(int(n), len(dataframe)), random_state=seed)
    flat, figure = _panels(len(sample), ncols, ax, panel_size=(2.6, 2.9))
    for axis, (_, row) in zip(flat, sample.iterrows()):
        image = _load_image(row[x_col], target_size)
        title = _wrap(_join_labels(row[y_col]))
        if image is None:
            _show_text(axis, "unreadable image")
            axis.set_title(title, fontsize=9, fontweight="normal")
        else:
            _show_image(axis, image, title, **kwargs)
    return Display(flat, figure)


def plot_augmented_batch(originals, augmented, *, labels=None, ax=None, **kwargs):
    """Images before (first row) and after augmentation (one row per augmented version).

    Parameters
    ----------
    originals : array-like (n, height, width, 3) in [0, 1]
        The images as the pipeline yields them.
    augmented : array-like (n, height, width, 3) or (k, n, height, width, 3) in [0, 1]
        The same images after augmentation, once or ``k`` times.
    labels : list, optional
        One title per column (a string or a list of labels).
    ax : 2-D array of matplotlib Axes, optional
        ``(1 + k, n)`` axes to draw on; a new figure is created when None.
    **kwargs
        Passed to ``Axes.imshow``.

    Returns
    -------
    Display
        ``axes_`` row by row: the originals first.
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
    flat, figure = _panels(len(rows) * n_images, n_images, ax, panel_size=(2.2, 2.3))
    for row_index, images in enumerate(rows):
        for column, image in enumerate(images):
            axis = flat[row_index * n_images + column]
            title = _wrap(_join_labels(labels[column]), 22) if labels is not None and \
                row_index == 0 else None
            _show_image(axis, np.clip(image, 0, 1), title, **kwargs)
            if column == 0:
                axis.set_ylabel("original" if row_index == 0 else
                                "augmented" if len(rows) == 2 else f"augmented {row_index}")
    return Display(flat, figure)


# --------------------------------------------------------------------------- training
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
    elif history.index.name == "epoch":  # helpers.artefacts.read_history
        history.index = history.index.astype(int) + 1
    else:
        history.index = np.arange(1, len(history) + 1)
    history.index.name = "epoch"
    return history


def _kept_epoch(frame, monitor):
    """The epoch (1-based) with the best value of ``monitor``, as the callbacks keep it."""
    if monitor is None:
        monitor = next((name for name in ("val_f1_micro", "val_pr_auc", "val_loss")
                        if name in frame.columns), None)
    if monitor is None or monitor not in frame.columns or not frame[monitor].notna().any():
        return None, monitor
    column = frame[monitor]
    return (column.idxmin() if monitor.endswith("loss") else column.idxmax()), monitor


def plot_history(history, *, metrics=None, monitor=None, ax=None, ncols=None, **kwargs):
    """Training and validation curves, one panel per metric, with the epoch that was kept.

    Parameters
    ----------
    history : pd.DataFrame, dict or keras.callbacks.History
        Per-epoch values, e.g. ``helpers.artefacts.read_history(folder)``, the
        ``history.csv`` a run wrote, or ``model.fit(...)``'s return.
    metrics : sequence of str, optional
        Metric names without the ``val_`` prefix; default: every metric, loss first.
    monitor : str, optional
        The value the checkpoint and early stopping watched; its best epoch is marked on
        every panel (``val_loss`` is best when lowest, anything else when highest).
        Default: ``val_f1_micro``, ``val_pr_auc`` or ``val_loss``, the first in the history.
    ax : sequence of matplotlib Axes, optional
        One axes per metric; a new figure is created when None.
    ncols : int, optional
        Panels per row (default: all in one row, up to 4).
    **kwargs
        Passed to ``Axes.plot``.

    Returns
    -------
    Display
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
    kept, monitor = _kept_epoch(frame, monitor)
    flat, figure = _panels(len(metrics), ncols or min(len(metrics), 4), ax,
                           panel_size=(4.0, 3.2))
    palette = sns.color_palette()
    kwargs.setdefault("marker", "o" if len(frame) <= 30 else None)
    kwargs.setdefault("markersize", 4)
    for axis, name in zip(flat, metrics):
        for column, label, color in ((name, "train", palette[0]),
                                     (f"val_{name}", "validation", palette[1])):
            if column in frame.columns:
                axis.plot(frame.index, frame[column], label=label, **{"color": color, **kwargs})
        if kept is not None:
            axis.axvline(kept, color="grey", linestyle=":", linewidth=1.2,
                         label=f"kept: epoch {kept} (best {monitor})")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(name.replace("_", " "))
        axis.set_title(name.replace("_", " "))
        axis.legend(fontsize=8)
    return Display(flat, figure)


def plot_learning_rate(learning_rates, *, ax=None, title="Learning rate per epoch", **kwargs):
    """The learning rate of each epoch, on a log scale.

    Parameters
    ----------
    learning_rates : array-like, pd.Series or dict
        One value per epoch (epoch 1 first), e.g. ``history["learning_rate"]``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    title : str
    **kwargs
        Passed to ``Axes.plot``.

    Returns
    -------
    Display
    """
    values = pd.Series(learning_rates, dtype=float) if isinstance(learning_rates, dict) \
        else pd.Series(np.asarray(learning_rates, dtype=float))
    epochs = np.arange(1, len(values) + 1)
    ax = _one_ax(ax, (5, 3.2))
    kwargs.setdefault("marker", "o" if len(values) <= 40 else None)
    kwargs.setdefault("markersize", 4)
    ax.plot(epochs, values.to_numpy(), **kwargs)
    if (values > 0).all():
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    return Display(ax)


# --------------------------------------------------------------------------- post-mortem
def plot_confusion_grid(y_true, y_pred, classes, *, ncols=4, ax=None, **kwargs):
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
    ax : sequence of matplotlib Axes, optional
        One axes per class; a new figure is created when None.
    **kwargs
        Passed to ``seaborn.heatmap`` (``cmap=``...).

    Returns
    -------
    Display
        One panel per class; each cell shows the count and its share of all samples.
    """
    table = evaluation.confusion_table(y_true, y_pred, classes)
    n_samples = max(int(table[["tn", "fp", "fn", "tp"]].iloc[0].sum()), 1) if len(table) else 1
    flat, figure = _panels(len(table), ncols, ax, panel_size=(2.9, 2.8))
    options = dict(fmt="", cbar=False, cmap="Blues", square=True, linewidths=1,
                   linecolor="white", annot_kws={"fontsize": 9}, vmin=0)
    for axis, (label, row) in zip(flat, table.iterrows()):
        matrix = np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]], dtype=int)
        cells = [[f"{count:,}\n{count / n_samples:.0%}" for count in line] for line in matrix]
        sns.heatmap(matrix, ax=axis, annot=np.array(cells), xticklabels=["no", "yes"],
                    yticklabels=["no", "yes"], **{**options, **kwargs})
        axis.set_xlabel("predicted", fontsize=9)
        axis.set_ylabel("true", fontsize=9)
        axis.tick_params(labelsize=8, rotation=0)
        axis.set_title(f"{label}\nF1 {row['f1']:.2f} · R {row['recall']:.2f} · "
                       f"P {row['precision']:.2f}", fontsize=10)
    if ax is None:
        figure.suptitle("Per-class confusion matrices (cells: count, share of all images)")
    return Display(flat, figure)


def _draw_curves(kind, y_true, y_prob, classes, ax, micro_average, chance, **kwargs):
    """Draw ``helpers.evaluation.class_curves`` on ``ax``; return the axes."""
    curves = evaluation.class_curves(y_true, y_prob, classes, kind=kind,
                                     micro_average=micro_average)
    ax = _one_ax(ax, (8.5, 5.5))
    area_name = "AP" if kind == "pr" else "AUC"
    n_classes = len(curves) - bool(micro_average)
    for index, (label, curve) in enumerate(curves.items()):
        if label == "micro-average":
            style = {"color": "black", "linestyle": "--", "linewidth": 2.2}
        else:
            style = _curve_style(index, n_classes)
        if curve["note"]:
            ax.plot([], [], " ", label=f"{label}: skipped ({curve['note']})")
            continue
        text = f"{label} ({area_name} {curve['area']:.2f}"
        text += f", chance {curve['chance']:.2f})" if kind == "pr" else ")"
        line, = ax.plot(curve["x"], curve["y"], label=text,
                        drawstyle="steps-post" if kind == "pr" else "default",
                        **{**style, **kwargs})
        if kind == "pr" and chance and label != "micro-average":
            # A model that ranks at random has precision = the class's prevalence.
            ax.axhline(curve["chance"], color=line.get_color(), linestyle=":", linewidth=0.9,
                       alpha=0.8)
    return ax


def plot_pr_curves(y_true, y_prob, classes, *, ax=None, micro_average=False, chance=True,
                   **kwargs):
    """Precision-recall curves, one per class, with the average precision and its chance level.

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
    chance : bool, default=True
        Draw each class's chance level, its prevalence, as a dotted line of its colour.
    **kwargs
        Passed to ``Axes.plot`` for every curve.

    Returns
    -------
    Display
        The legend sits beside the axes, hiding no curve; classes with a single truth
        value have no curve and a "skipped" legend entry.
    """
    ax = _draw_curves("pr", y_true, y_prob, classes, ax, micro_average, chance, **kwargs)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.03)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curves (dotted: chance = prevalence)" if chance
                 else "Precision-recall curves")
    _legend_outside(ax, fontsize=8)
    return Display(ax)


def plot_roc_curves(y_true, y_prob, classes, *, ax=None, micro_average=False, **kwargs):
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
    **kwargs
        Passed to ``Axes.plot`` for every curve.

    Returns
    -------
    Display
        The legend sits beside the axes; classes with a single truth value have no curve
        and a "skipped" legend entry.
    """
    ax = _draw_curves("roc", y_true, y_prob, classes, ax, micro_average, False, **kwargs)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance (AUC 0.50)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.set_title("ROC curves")
    _legend_outside(ax, fontsize=8)
    return Display(ax)


def plot_threshold_curves(y_true, y_prob, classes, *, thresholds=None, ncols=4, ax=None,
                          **kwargs):
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
    ax : sequence of matplotlib Axes, optional
        One axes per class; a new figure is created when None.
    **kwargs
        Passed to ``Axes.step`` for every curve.

    Returns
    -------
    Display
        One panel per class; the title compares F1 at 0.5 with F1 at the marked threshold.
    """
    truth = np.asarray(y_true)
    probabilities = np.asarray(y_prob, dtype=float)
    if thresholds is None:
        thresholds = evaluation.tune_thresholds(truth, probabilities, classes=classes)
    at_half = evaluation.classification_table(truth, probabilities, classes)
    at_tuned = evaluation.classification_table(truth, probabilities, classes, thresholds)
    thresholds = at_tuned["threshold"].to_numpy()
    palette = sns.color_palette()
    flat, figure = _panels(len(at_half), ncols, ax, panel_size=(3.2, 2.8))
    legend_drawn = False
    for index, (axis, label) in enumerate(zip(flat, at_half.index)):
        curve = evaluation.threshold_curve(truth[:, index], probabilities[:, index])
        axis.set_ylim(0, 1.05)
        if curve.empty:
            axis.set_xlim(0, 1)
            _show_text(axis, f"no positive example:\nthreshold stays {thresholds[index]:.2f}")
            axis.set_title(label, fontsize=10)
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
            axis.step(steps["threshold"], steps[column], where="pre", label=column,
                      **{"color": color, "linewidth": width, **kwargs})
        axis.axvline(0.5, color="grey", linestyle=":", linewidth=1, label="0.5")
        axis.axvline(thresholds[index], color="black", linestyle="--", linewidth=1.2,
                     label="tuned")
        # Zoom on where the scores are when the model squeezes them into a narrow band.
        low = min(curve["threshold"].min(), 0.5, thresholds[index])
        high = max(highest, 0.5, thresholds[index])
        margin = max(0.02, 0.08 * (high - low))
        axis.set_xlim(max(0.0, low - margin), min(1.0, high + margin))
        axis.set_xlabel("threshold", fontsize=9)
        axis.tick_params(labelsize=8)
        axis.set_title(f"{label}\nF1 {at_half['f1'].iloc[index]:.2f} at 0.5 → "
                       f"{at_tuned['f1'].iloc[index]:.2f} at {thresholds[index]:.2f}",
                       fontsize=10)
        if not legend_drawn:
            axis.legend(fontsize=7, loc="best")
            legend_drawn = True
    if ax is None:
        figure.suptitle("F1, precision and recall against the threshold")
    return Display(flat, figure)


def plot_error_gallery(filenames, y_true, y_prob, classes, *, kind="false_positive", n=8,
                       thresholds=0.5, ncols=4, target_size=None, ax=None, **kwargs):
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
    ax : sequence of matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    **kwargs
        Passed to ``Axes.imshow``.

    Returns
    -------
    Display
        Titles: the mistaken label and its probability, the true labels, and the predicted
        labels with their probabilities.
    """
    filenames = list(filenames)
    probabilities = np.asarray(y_prob, dtype=float)
    if len(filenames) != len(probabilities):
        raise ValueError(f"filenames: expected {len(probabilities)} paths (one per row of "
                         f"y_true), got {len(filenames)}")
    errors = evaluation.worst_errors(y_true, probabilities, classes, kind=kind, n=n,
                                     thresholds=thresholds)
    word = "false positive" if kind == "false_positive" else "missed"
    flat, figure = _panels(len(errors), ncols, ax, panel_size=(3.0, 3.6))
    if errors.empty:
        _show_text(flat[0], f"no {word.replace('missed', 'false negative')} at these thresholds")
        return Display(flat, figure)
    column_of = {label: index for index, label in enumerate(classes)}
    for axis, error in zip(flat, errors.itertuples()):
        row = probabilities[error.sample]
        # a no-break space keeps each label next to its probability when the title wraps
        predicted = ", ".join(f"{label}\u00a0{row[column_of[label]]:.2f}"
                              for label in error.predicted_labels) or "(nothing)"
        title = (f"{word}: {error.label} {error.probability:.2f}\n"
                 f"{_wrap('true: ' + _join_labels(error.true_labels), 34, 2)}\n"
                 f"{_wrap('pred: ' + predicted, 34, 2)}")
        image = _load_image(filenames[error.sample], target_size)
        if image is None:
            _show_text(axis, "unreadable image")
        else:
            _show_image(axis, image, **kwargs)
        axis.set_title(title, fontsize=8, fontweight="normal", loc="left")
    if ax is None:
        figure.suptitle("Most confident false positives" if kind == "false_positive"
                        else "Most confidently missed labels (false negatives)")
    return Display(flat, figure)


def plot_error_pairs(y_true, y_pred, classes, *, kind="false_positive", normalize=False,
                     ax=None, annot=None, **kwargs):
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
    **kwargs
        Passed to ``seaborn.heatmap``.

    Returns
    -------
    Display
    """
    pairs = evaluation.error_pairs(y_true, y_pred, classes, kind=kind)
    errors_per_label = evaluation.error_counts(y_true, y_pred, kind=kind)
    values = pairs.astype(float)
    if normalize:
        values = values.div(np.where(errors_per_label > 0, errors_per_label, np.nan), axis=0)
    values.index = [f"{label} ({count})" for label, count in zip(pairs.index, errors_per_label)]
    values.index.name = f"{pairs.index.name} (errors)"
    n_labels = len(values)
    annot = n_labels <= 20 if annot is None else annot
    side = min(2.5 + 0.55 * n_labels, 14)
    ax = _one_ax(ax, (side + 2.5, side))
    options = dict(annot=annot, fmt=".0%" if normalize else ".0f",
                   cmap="Blues" if kind == "false_positive" else "Oranges", linewidths=0.5,
                   linecolor="white", annot_kws={"fontsize": 8}, vmin=0,
                   vmax=1 if normalize else None,
                   cbar_kws={"label": "share of the row's errors" if normalize else "images",
                             "shrink": 0.8})
    sns.heatmap(values, ax=ax, **{**options, **kwargs})
    _heatmap_ticks(ax, n_labels + 1)
    ax.set_title("False positives: the true labels of those images" if kind == "false_positive"
                 else "False negatives: what was predicted instead")
    return Display(ax)


def plot_metric_comparison(table, metric, *, x="class", hue="model", ax=None, annotate=True,
                           title=None, **kwargs):
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
    **kwargs
        Passed to ``seaborn.barplot`` (``palette=``...).

    Returns
    -------
    Display
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
    ax = _one_ax(ax, (min(max(6.0, 1.2 + 0.45 * n_groups * n_hues + 0.3 * n_groups), 16), 4.2))
    data = table.assign(**{metric: pd.to_numeric(table[metric], errors="coerce")})
    options = {"palette": "Set2"} if hue else {"color": sns.color_palette()[0]}
    sns.barplot(data=data, x=x, y=metric, hue=hue, ax=ax, errorbar=None, **{**options, **kwargs})
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
        _legend_outside(ax, title=hue, fontsize=8, title_fontsize=9)
    ax.set_title(title or f"{metric.replace('_', ' ')} by {x}")
    return Display(ax)


# --------------------------------------------------------------------------- explanations
OUTCOME_TITLES = {"true_positive": "true positive", "false_positive": "false positive",
                  "false_negative": "false negative"}


def _as_image(image):
    """An image array in [0, 1] or uint8, or a path read upright (None when unreadable)."""
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return _load_image(image, None)
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    if pixels.ndim != 3 or pixels.shape[-1] not in (3, 4):
        raise ValueError(f"image: expected an array (height, width, 3) or a path, got shape "
                         f"{pixels.shape}")
    if pixels.dtype != np.uint8 and pixels.size and pixels.max() > 1.01:
        raise ValueError(f"image: expected uint8 or values in [0, 1], got values up to "
                         f"{pixels.max():.3g} (divide by 255?)")
    return pixels


def _draw_heatmap(ax, image, heatmap, peak=None, **kwargs):
    """The image with the heatmap stretched over it (bilinear) and the peak marked."""
    height, width = image.shape[:2]
    _show_image(ax, image)
    if heatmap is not None:
        options = {"cmap": "jet", "alpha": 0.45, "interpolation": "bilinear", "vmin": 0.0,
                   "vmax": 1.0}
        ax.imshow(np.asarray(heatmap, dtype=float), extent=(-0.5, width - 0.5, height - 0.5, -0.5),
                  **{**options, **kwargs})
    if peak is not None and np.all(np.isfinite(peak)):
        ax.plot(peak[1] * width - 0.5, peak[0] * height - 0.5, marker="+", color="white",
                markersize=14, markeredgewidth=2.5)
        ax.plot(peak[1] * width - 0.5, peak[0] * height - 0.5, marker="+", color="black",
                markersize=9, markeredgewidth=1.2)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)


def _draw_boxes(ax, boxes, height, width, label=None):
    """Rectangles of ``boxes`` (fractions); the boxes of ``label`` solid, the others dashed."""
    from matplotlib.patches import Rectangle

    for row in boxes.itertuples(index=False):
        own = label is None or row.label == label
        ax.add_patch(Rectangle((row.xmin * width - 0.5, row.ymin * height - 0.5),
                               (row.xmax - row.xmin) * width, (row.ymax - row.ymin) * height,
                               fill=False, edgecolor="white" if own else "lightgrey",
                               linestyle="-" if own else "--", linewidth=1.6 if own else 1.0))
        if label is None or not own:
            ax.text(row.xmin * width, row.ymin * height, str(row.label), fontsize=7,
                    color="black", va="top", bbox={"facecolor": "white", "alpha": 0.7,
                                                   "pad": 1, "linewidth": 0})


def plot_heatmap_overlay(image, heatmaps, labels, *, peaks=None, probabilities=None, boxes=None,
                         show_image=True, ncols=4, ax=None, **kwargs):
    """One image with a heatmap per label over it (Grad-CAM, ``helpers.explain``).

    Parameters
    ----------
    image : array-like (height, width, 3) or path
        uint8 or floats in [0, 1]; a path is read upright (``helpers.files.images.read_image``).
    heatmaps : array-like (k, h, w) or (h, w)
        Values in [0, 1] at any resolution, stretched over the image (e.g.
        ``Explanation.heatmaps[i]``).
    labels : str or list of k str
        The label of each heatmap.
    peaks : array-like (k, 2), optional
        ``(y, x)`` fractions of the image, marked with a cross.
    probabilities : array-like (k,), optional
        Written in the titles.
    boxes : pd.DataFrame, optional
        Object boxes of this image as fractions (``helpers.explain.box_fractions``): the
        label's boxes solid on its panel, the others dashed; all of them on the image panel.
    show_image : bool, default=True
        Start with a panel of the image alone.
    ncols : int, default=4
        Panels per row.
    ax : sequence of matplotlib Axes, optional
        Where to draw; a new figure is created when None.
    **kwargs
        Passed to ``Axes.imshow`` for the heatmaps (``cmap=``, ``alpha=``...).

    Returns
    -------
    Display
        ``axes_``: the image (when ``show_image``), then one panel per label.
    """
    picture = _as_image(image)
    if picture is None:
        raise ValueError(f"image: cannot read {image}")
    maps = np.asarray(heatmaps, dtype=float)
    maps = maps[None] if maps.ndim == 2 else maps
    labels = [labels] if isinstance(labels, str) else [str(label) for label in labels]
    if maps.ndim != 3 or len(maps) != len(labels):
        raise ValueError(f"heatmaps and labels: expected one (h, w) map per label, got "
                         f"{maps.shape} for {len(labels)} labels")
    peaks = None if peaks is None else np.asarray(peaks, dtype=float).reshape(len(labels), 2)
    flat, figure = _panels(len(labels) + bool(show_image), ncols, ax, panel_size=(2.8, 3.0))
    height, width = picture.shape[:2]
    if show_image:
        _show_image(flat[0], picture, "image")
        if boxes is not None:
            _draw_boxes(flat[0], boxes, height, width)
    for index, (axis, label) in enumerate(zip(flat[bool(show_image):], labels)):
        _draw_heatmap(axis, picture, maps[index], None if peaks is None else peaks[index],
                      **kwargs)
        if boxes is not None:
            _draw_boxes(axis, boxes, height, width, label=label)
        title = label if probabilities is None else f"{label} {float(probabilities[index]):.2f}"
        axis.set_title(_wrap(title, 30, 2), fontsize=9, fontweight="normal")
    return Display(flat, figure)


def plot_outcome_gallery(cases, *, ax=None, **kwargs):
    """Per class, where the model looked in its true positives, false positives and misses.

    Parameters
    ----------
    cases : pd.DataFrame
        ``helpers.explain.outcome_cases``: one row per image with ``label``, ``outcome``
        (``true_positive``, ``false_positive`` or ``false_negative``), ``rank``,
        ``filename``, ``probability``, ``heatmap`` (None when unreadable), ``peak_y`` and
        ``peak_x``.
    ax : 2-D array of matplotlib Axes, optional
        ``(n_labels, 3 * n)`` axes; a new figure is created when None.
    **kwargs
        Passed to ``Axes.imshow`` for the heatmaps.

    Returns
    -------
    Display
        One row per label; columns: ``n`` true positives, ``n`` false positives, ``n`` false
        negatives (``n`` = the largest rank + 1). A false negative's heatmap shows where the
        model looked for the label it did not find; "(empty map)" means no region raised it.
    """
    needed = ["label", "outcome", "rank", "filename", "probability", "heatmap", "peak_y",
              "peak_x"]
    missing = [column for column in needed if column not in getattr(cases, "columns", [])]
    if missing:
        raise ValueError(f"cases: expected the columns of helpers.explain.outcome_cases, "
                         f"missing {missing}")
    labels = list(dict.fromkeys(cases["label"]))
    per_kind = int(cases["rank"].max()) + 1 if len(cases) else 1
    columns = len(OUTCOME_TITLES) * per_kind
    flat, figure = _panels(max(len(labels), 1) * columns, columns, ax, panel_size=(2.0, 2.3))
    if not labels:
        _show_text(flat[0], "no case to show")
        return Display(flat, figure)
    found = {(row.label, row.outcome, int(row.rank)): row for row in cases.itertuples()}
    for row_index, label in enumerate(labels):
        for kind_index, outcome in enumerate(OUTCOME_TITLES):
            for rank in range(per_kind):
                axis = flat[row_index * columns + kind_index * per_kind + rank]
                case = found.get((label, outcome, rank))
                image = None if case is None else _load_image(case.filename, None)
                if case is None:
                    _show_text(axis, f"no {OUTCOME_TITLES[outcome]}")
                elif image is None:
                    _show_text(axis, "unreadable image")
                else:
                    _draw_heatmap(axis, image, case.heatmap, (case.peak_y, case.peak_x), **kwargs)
                if case is not None:
                    empty = image is not None and not np.isfinite(case.peak_y)
                    axis.set_title(f"{OUTCOME_TITLES[outcome]} {case.probability:.2f}"
                                   + ("\n(empty map)" if empty else ""),
                                   fontsize=8, fontweight="normal")
                if kind_index == 0 and rank == 0:
                    axis.set_ylabel(label, fontsize=10)
    if ax is None:
        figure.suptitle("Where the model looks: surest true and false positives, worst misses")
    return Display(flat, figure)
