"""Plots for the series, in the style of scikit-learn's ``Display`` objects.

Every ``plot_*`` function computes what it shows (with :mod:`helpers.scan` and
:mod:`helpers.evaluation`), draws it and returns a :class:`Display`. Shared arguments:
``ax``, where to draw (one Axes, or a sequence of Axes for a plot of several panels; a figure
is created only when it is None); ``**kwargs``, passed to the matplotlib or seaborn call that
draws the data (``color=``, ``cmap=``, ``alpha=``...); ``ncols``, panels per row; ``y_true``,
``y_prob`` and ``y_pred``, the multi-hot truth, the probabilities and the 0/1 predictions
(arrays ``(n_samples, n_classes)``); ``classes``, the class names, one per column; ``annot``,
whether a heatmap writes its values in the cells (default: up to 20 labels).

Nothing is saved here (``Display.savefig``, or ``nb.save`` in the notebooks), and importing
the module changes no matplotlib setting: :func:`set_theme` applies the series' look.
"""
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter

from helpers import evaluation, scan
from helpers.files.pictures import as_image, check_unit_range, load_image


def set_theme():
    """Apply the series' seaborn theme: white grid, readable fonts, bold titles, tight saving."""
    sns.set_theme(context="notebook", style="whitegrid", palette="tab10",
                  rc={"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight",
                      "axes.titlesize": 11, "axes.titleweight": "bold"})


class Display:
    """What a plot drew: ``figure_``, ``axes_`` (its panels), ``ax_`` (one Axes, or ``axes_``)."""

    def __init__(self, axes, figure=None):
        self.axes_ = np.ravel(np.asarray(axes, dtype=object))
        self.figure_ = figure if figure is not None else self.axes_[0].figure
        self.ax_ = self.axes_[0] if len(self.axes_) == 1 else self.axes_

    def __len__(self):
        return len(self.axes_)

    def __getitem__(self, index):
        return self.axes_[index]

    def savefig(self, *args, **kwargs):
        return self.figure_.savefig(*args, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}({len(self.axes_)} axes)"


# --------------------------------------------------------------------------- plumbing
def _one_ax(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _panels(n_panels, ncols, ax, panel_size, title=None):
    """``(flat axes, figure)`` for ``n_panels`` panels: the given axes, or a new titled grid."""
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
    for extra in grid.ravel()[n_panels:]:
        extra.set_visible(False)
    if title:
        figure.suptitle(title)
    return grid.ravel()[:n_panels], figure


def _require_columns(frame, columns, name):
    missing = [column for column in columns if column not in getattr(frame, "columns", [])]
    if missing:
        raise ValueError(f"{name}: expected the columns {columns}, missing {missing} (got "
                         f"{list(getattr(frame, 'columns', []))})")


def _labels_text(labels, width=26, max_lines=3, prefix=""):
    """A list of labels (or a text) as wrapped lines; ``(no label)`` for an empty list."""
    if not isinstance(labels, str):
        labels = ", ".join(map(str, labels)) or "(no label)"
    return "\n".join(textwrap.wrap(prefix + labels, width=width, max_lines=max_lines,
                                   placeholder=" …"))


def _caption(ax, text, fontsize=9, **kwargs):
    ax.set_title(text, fontsize=fontsize, fontweight="normal", **kwargs)


def _show(ax, image, **kwargs):
    """An image, or a text in its place, without ticks or grid (None: an unreadable image)."""
    if image is None or isinstance(image, str):
        ax.text(0.5, 0.5, image or "unreadable image", ha="center", va="center", fontsize=9,
                transform=ax.transAxes, wrap=True)
    else:
        ax.imshow(image, **kwargs)
    ax.set(xticks=[], yticks=[])
    ax.grid(False)


def _slant_x(ax, only_if_crowded=False):
    """Slant the x tick labels (``only_if_crowded``: when they would not fit side by side)."""
    font_size = plt.rcParams["xtick.labelsize"]
    font_size = font_size if isinstance(font_size, (int, float)) else 11
    width_points = ax.get_position().width * ax.figure.get_size_inches()[0] * 72
    if not only_if_crowded or sum(len(tick.get_text()) + 3 for tick in ax.get_xticklabels()) \
            > width_points / (0.6 * font_size):
        ax.tick_params(axis="x", rotation=45)
        plt.setp(ax.get_xticklabels(), horizontalalignment="right")


def _legend_outside(ax, **kwargs):
    """A legend to the right of the axes, so that it hides no curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kwargs)


def _label_heatmap(matrix, ax, annot, row_totals, colorbar, **options):
    """A label × label heatmap: counts, or shares of ``row_totals`` (NaN where a total is 0)."""
    shares = row_totals is not None
    if shares:
        matrix = matrix.div(np.where(row_totals > 0, row_totals, np.nan), axis=0)
    side = min(2.5 + 0.55 * len(matrix), 14)
    ax = _one_ax(ax, (side + 2, side))
    sns.heatmap(matrix, ax=ax, **{
        "annot": len(matrix) <= 20 if annot is None else annot, "fmt": ".0%" if shares else ".0f",
        "linewidths": 0.5, "linecolor": "white", "annot_kws": {"fontsize": 8}, "vmin": 0,
        "vmax": 1 if shares else None, "cbar_kws": {"label": colorbar, "shrink": 0.8}, **options})
    if shares and ax.collections and ax.collections[0].colorbar is not None:
        ax.collections[0].colorbar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.tick_params(axis="both", rotation=0)
    if matrix.shape[1] > 6:
        _slant_x(ax)
    return ax


# --------------------------------------------------------------------------- data scan
def plot_label_counts(label_counts, *, n_images=None, ax=None, title="Images per label",
                      **kwargs):
    """Bars of ``helpers.scan.label_counts``, largest on top; ``n_images`` adds each share."""
    if not isinstance(label_counts, (pd.Series, dict)):
        raise ValueError(f"label_counts: expected a pandas Series or a dict label → number, "
                         f"got {type(label_counts).__name__}")
    counts = pd.Series(label_counts, dtype=float).sort_values(ascending=True)
    ax = _one_ax(ax, (7, 1.2 + 0.32 * max(len(counts), 2)))
    bars = ax.barh(counts.index.astype(str), counts.to_numpy(),
                   **{"color": sns.color_palette()[0], **kwargs})
    ax.bar_label(bars, padding=3, fontsize=9, labels=[
        f"{int(count):,}" + ("" if n_images is None else f" ({count / n_images:.0%})")
        for count in counts])
    ax.set(xlim=(0, (counts.max() if len(counts) else 1) * 1.2), xlabel="images",
           ylabel="label", title=title)
    ax.grid(axis="y", visible=False)
    return Display(ax)


def plot_labels_per_image(labels_per_image, *, ax=None, title="Labels per image", **kwargs):
    """Bars of how many images have 0, 1, 2… labels, from the distribution (a dict, or
    ``helpers.scan.labels_per_image``: index ``n_labels``) or every image's number of labels."""
    values = labels_per_image
    if isinstance(values, dict) or (isinstance(values, pd.Series)
                                    and values.index.name in ("n_labels", "labels_per_image")):
        distribution = pd.Series(values, dtype=float).astype(int).rename(index=int)
    else:
        distribution = pd.Series(np.asarray(values)).astype(int).value_counts()
    full_range = range(int(distribution.index.max()) + 1) if len(distribution) else range(1)
    distribution = distribution.reindex(full_range, fill_value=0)
    total = distribution.sum()
    ax = _one_ax(ax, (6, 3.5))
    bars = ax.bar(distribution.index.astype(str), distribution.to_numpy(),
                  **{"color": sns.color_palette()[1], **kwargs})
    ax.bar_label(bars, padding=2, fontsize=9, labels=[
        f"{count:,}\n({count / total:.0%})" if total else "0" for count in distribution])
    ax.set(ylim=(0, max(distribution.max(), 1) * 1.25), xlabel="labels in the image",
           ylabel="images", title=title)
    ax.grid(axis="x", visible=False)
    return Display(ax)


def plot_cooccurrence(cooccurrence_df, *, normalize=False, ax=None, annot=None, title=None,
                      **kwargs):
    """Heatmap of ``helpers.scan.cooccurrence``; ``normalize`` divides each row by the diagonal,
    so that cell (A, B) reads "share of the images with A that also have B"."""
    shape = getattr(cooccurrence_df, "shape", None)
    if not isinstance(cooccurrence_df, pd.DataFrame) or shape[0] != shape[1]:
        raise ValueError("cooccurrence_df: expected a square label × label DataFrame, got "
                         f"{type(cooccurrence_df).__name__} of shape {shape}")
    matrix = cooccurrence_df.astype(float)
    ax = _label_heatmap(matrix, ax, annot, np.diag(matrix.to_numpy()) if normalize else None,
                        "share of the row label's images"
                        if normalize else "images with both labels",
                        **{"cmap": "rocket_r", "square": True, **kwargs})
    ax.set(xlabel="…also has this label" if normalize else "label",
           ylabel="images with this label…" if normalize else "label",
           title=title or ("Co-occurrence (share of the row label)" if normalize
                           else "Co-occurrence (images with both labels)"))
    return Display(ax)


def plot_image_sizes(sizes_df, *, ax=None, bins=30, **kwargs):
    """Histograms of the readable images' width, height and aspect (``scan.image_sizes``)."""
    _require_columns(sizes_df, ["width", "height"], "sizes_df")
    summary = scan.size_summary(sizes_df)
    sizes = sizes_df[["width", "height"]].apply(pd.to_numeric, errors="coerce").dropna()
    sizes = sizes[(sizes["width"] > 0) & (sizes["height"] > 0)]
    values = {"width": sizes["width"], "height": sizes["height"],
              "aspect": sizes["width"] / sizes["height"]}
    flat, figure = _panels(3, 3, ax, (3.6, 3.0), f"Image sizes of {summary['n_read']:,} images")
    for axis, (name, column), color in zip(flat, values.items(), sns.color_palette()[2:5]):
        title = name
        if len(column):
            sns.histplot(column.to_numpy(), bins=bins, ax=axis, **{"color": color, **kwargs})
            median = summary[name]["median"]
            axis.axvline(median, color="black", linestyle="--", linewidth=1)
            title += f": median {median:.2f}" if name == "aspect" else f": median {median:.0f} px"
        else:
            _show(axis, "no readable sizes")
        axis.set(title=title, ylabel="images",
                 xlabel="width / height" if name == "aspect" else f"{name} (pixels)")
    return Display(flat, figure)


def plot_sample_grid(dataframe, *, n=16, ncols=4, target_size=None, seed=0, x_col="filename",
                     y_col="labels", ax=None, **kwargs):
    """``n`` random images of ``dataframe`` (paths in ``x_col``, label lists in ``y_col``) with
    their labels; ``target_size`` ``(height, width)``: resized, as the model sees them."""
    _require_columns(dataframe, [x_col, y_col], "dataframe")
    sample = dataframe.sample(n=min(int(n), len(dataframe)), random_state=seed)
    flat, figure = _panels(len(sample), ncols, ax, (2.6, 2.9))
    for axis, path, labels in zip(flat, sample[x_col], sample[y_col]):
        _show(axis, load_image(path, target_size), **kwargs)
        _caption(axis, _labels_text(labels))
    return Display(flat, figure)


def plot_augmented_batch(originals, augmented, *, labels=None, ax=None, **kwargs):
    """Images before (first row) and after augmentation (a row per version), ``labels`` (one per
    column) as titles. ``originals``: ``(n, height, width, 3)`` in [0, 1], as the pipeline yields
    them; ``augmented``: the same shape, or ``(k, n, height, width, 3)`` for ``k`` versions."""
    originals = np.asarray(originals, dtype=float)
    augmented = np.asarray(augmented, dtype=float)
    augmented = augmented[None] if augmented.ndim == 4 else augmented
    if originals.ndim != 4 or augmented.shape[1:] != originals.shape:
        raise ValueError("originals and augmented: expected shapes (n, h, w, 3) and (n, h, w, 3) "
                         f"or (k, n, h, w, 3), got {originals.shape} and {augmented.shape}")
    check_unit_range("originals", originals)
    check_unit_range("augmented", augmented)
    n_images, rows = len(originals), [originals, *augmented]
    if labels is not None and len(labels) != n_images:
        raise ValueError(f"labels: expected {n_images} entries (one per image), got {len(labels)}")
    flat, figure = _panels(len(rows) * n_images, n_images, ax, (2.2, 2.3))
    for row_index, images in enumerate(rows):
        for column, image in enumerate(images):
            _show(flat[row_index * n_images + column], np.clip(image, 0, 1), **kwargs)
            if row_index == 0 and labels is not None:
                _caption(flat[column], _labels_text(labels[column], 22))
        flat[row_index * n_images].set_ylabel(
            "original" if row_index == 0 else "augmented" if len(rows) == 2
            else f"augmented {row_index}")
    return Display(flat, figure)


# --------------------------------------------------------------------------- training
def _history_frame(history):
    """Per-epoch values as a DataFrame indexed by the epoch, counted from 1."""
    history = getattr(history, "history", history)  # a keras.callbacks.History
    history = pd.DataFrame(history) if isinstance(history, dict) else history
    if not isinstance(history, pd.DataFrame):
        raise ValueError("history: expected a DataFrame (history.csv), a dict or a Keras "
                         f"History, got {type(history).__name__}")
    history = history.set_index("epoch") if "epoch" in history.columns else history
    # CSVLogger's column and read_history's index count from 0; other tables have a row per epoch
    epochs = history.index.astype(int) if history.index.name == "epoch" else range(len(history))
    return history.set_axis(pd.Index(np.asarray(epochs) + 1, name="epoch"))


def _kept_epoch(frame, monitor):
    """The epoch with the best value of ``monitor``, as the callbacks keep it, and ``monitor``."""
    if monitor is None:
        monitor = next((name for name in ("val_f1_micro", "val_pr_auc", "val_loss")
                        if name in frame.columns), None)
    if monitor is None or monitor not in frame.columns or not frame[monitor].notna().any():
        return None, monitor
    column = frame[monitor]
    return (column.idxmin() if monitor.endswith("loss") else column.idxmax()), monitor


def _epoch_axis(ax, name, title):
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=name.replace("_", " "), title=title)


def plot_history(history, *, metrics=None, monitor=None, ax=None, ncols=None, **kwargs):
    """Training and validation curves per metric (names without ``val_``), marking the epoch kept
    by ``monitor`` (default: the first of ``val_f1_micro``, ``val_pr_auc``, ``val_loss``)."""
    frame = _history_frame(history)
    if metrics is None:
        metrics = sorted((column for column in frame.columns if not column.startswith("val_")
                          and column not in ("learning_rate", "lr")), key=lambda m: m != "loss")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [name for name in metrics
               if name not in frame.columns and f"val_{name}" not in frame.columns]
    if unknown:
        raise ValueError(f"metrics: {unknown} not in the history, which has {list(frame.columns)}")
    kept, monitor = _kept_epoch(frame, monitor)
    flat, figure = _panels(len(metrics), ncols or min(len(metrics), 4), ax, (4.0, 3.2))
    kwargs = {"marker": "o" if len(frame) <= 30 else None, "markersize": 4, **kwargs}
    palette = sns.color_palette()
    for axis, name in zip(flat, metrics):
        for column, label, color in ((name, "train", palette[0]),
                                     (f"val_{name}", "validation", palette[1])):
            if column in frame.columns:
                axis.plot(frame.index, frame[column], label=label, **{"color": color, **kwargs})
        if kept is not None:
            axis.axvline(kept, color="grey", linestyle=":", linewidth=1.2,
                         label=f"kept: epoch {kept} (best {monitor})")
        _epoch_axis(axis, name, name.replace("_", " "))
        axis.legend(fontsize=8)
    return Display(flat, figure)


def plot_learning_rate(learning_rates, *, ax=None, title="Learning rate per epoch", **kwargs):
    """The learning rate of each epoch (``history["learning_rate"]``), on a log scale."""
    values = pd.Series(learning_rates, dtype=float)
    ax = _one_ax(ax, (5, 3.2))
    ax.plot(np.arange(1, len(values) + 1), values.to_numpy(),
            **{"marker": "o" if len(values) <= 40 else None, "markersize": 4, **kwargs})
    if (values > 0).all():
        ax.set_yscale("log")
    _epoch_axis(ax, "learning_rate", title)
    return Display(ax)


# --------------------------------------------------------------------------- post-mortem
def plot_confusion_grid(y_true, y_pred, classes, *, ncols=4, ax=None, **kwargs):
    """A 2×2 confusion matrix per class, titled with its F1, recall and precision."""
    table = evaluation.confusion_table(y_true, y_pred, classes)
    n_samples = max(int(table[["tn", "fp", "fn", "tp"]].iloc[0].sum()), 1) if len(table) else 1
    flat, figure = _panels(len(table), ncols, ax, (2.9, 2.8),
                           "Per-class confusion matrices (cells: count, share of all images)")
    options = {"fmt": "", "cbar": False, "cmap": "Blues", "square": True, "linewidths": 1,
               "linecolor": "white", "annot_kws": {"fontsize": 9}, "vmin": 0,
               "xticklabels": ["no", "yes"], "yticklabels": ["no", "yes"], **kwargs}
    for axis, (label, row) in zip(flat, table.iterrows()):
        matrix = np.array([[row["tn"], row["fp"]], [row["fn"], row["tp"]]], dtype=int)
        cells = [[f"{count:,}\n{count / n_samples:.0%}" for count in line] for line in matrix]
        sns.heatmap(matrix, ax=axis, annot=np.array(cells), **options)
        axis.set_xlabel("predicted", fontsize=9)
        axis.set_ylabel("true", fontsize=9)
        axis.tick_params(labelsize=8, rotation=0)
        axis.set_title(f"{label}\nF1 {row['f1']:.2f} · R {row['recall']:.2f} · "
                       f"P {row['precision']:.2f}", fontsize=10)
    return Display(flat, figure)


def _curves(kind, y_true, y_prob, classes, ax, micro_average, chance, title, kwargs):
    """``helpers.evaluation.class_curves`` with each area (and chance level) in the legend."""
    curves = evaluation.class_curves(y_true, y_prob, classes, kind=kind,
                                     micro_average=micro_average)
    ax = _one_ax(ax, (8.5, 5.5))
    n_classes = len(curves) - bool(micro_average)
    palette = sns.color_palette("tab10" if n_classes <= 10 else "husl", n_classes)
    for index, (label, curve) in enumerate(curves.items()):
        if curve["note"]:
            ax.plot([], [], " ", label=f"{label}: skipped ({curve['note']})")
            continue
        if label == "micro-average":
            style = {"color": "black", "linestyle": "--", "linewidth": 2.2}
        else:  # beyond 10 classes, line styles keep the colours apart
            style = {"color": palette[index], "linewidth": 1.6,
                     "linestyle": ("-", "--", ":", "-.")[(index // 10) % 4]}
        text = f"{label} (AP {curve['area']:.2f}, chance {curve['chance']:.2f})" \
            if kind == "pr" else f"{label} (AUC {curve['area']:.2f})"
        line, = ax.plot(curve["x"], curve["y"], label=text,
                        drawstyle="steps-post" if kind == "pr" else "default",
                        **{**style, **kwargs})
        if chance and label != "micro-average":  # a random ranking's precision: prevalence
            ax.axhline(curve["chance"], color=line.get_color(), linestyle=":", linewidth=0.9,
                       alpha=0.8)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1,
                label="chance (AUC 0.50)")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.03 if kind == "pr" else 1.01), title=title,
           xlabel="recall" if kind == "pr" else "false positive rate",
           ylabel="precision" if kind == "pr" else "true positive rate (recall)")
    _legend_outside(ax, fontsize=8)
    return Display(ax)


def plot_pr_curves(y_true, y_prob, classes, *, ax=None, micro_average=False, chance=True,
                   **kwargs):
    """Precision-recall curves of ``evaluation.class_curves``; ``micro_average`` adds all pairs
    pooled, ``chance`` each class's chance level (its prevalence), dotted in its colour."""
    title = "Precision-recall curves" + (" (dotted: chance = prevalence)" if chance else "")
    return _curves("pr", y_true, y_prob, classes, ax, micro_average, chance, title, kwargs)


def plot_roc_curves(y_true, y_prob, classes, *, ax=None, micro_average=False, **kwargs):
    """ROC curves, one per class, the ROC-AUC in the legend; ``micro_average`` as for PR curves."""
    return _curves("roc", y_true, y_prob, classes, ax, micro_average, False, "ROC curves", kwargs)


def _threshold_panel(axis, curve, threshold, kwargs):
    """F1, precision and recall of one class as steps over the thresholds, zoomed on the scores."""
    # Below the lowest score every image is positive; above the highest, none is.
    steps = [curve.iloc[[0]].assign(threshold=0.0), curve[curve["threshold"] > 0]]
    if curve["threshold"].iloc[-1] < 1:
        steps.append(pd.DataFrame({"threshold": [1.0], "precision": [np.nan], "recall": [0.0],
                                   "f1": [0.0]}))
    steps = pd.concat(steps, ignore_index=True)
    palette = sns.color_palette()
    for column, color, width in (("f1", palette[3], 2.2), ("precision", palette[0], 1.2),
                                 ("recall", palette[2], 1.2)):
        axis.step(steps["threshold"], steps[column], where="pre", label=column,
                  **{"color": color, "linewidth": width, **kwargs})
    axis.axvline(0.5, color="grey", linestyle=":", linewidth=1, label="0.5")
    axis.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label="tuned")
    low = min(curve["threshold"].min(), 0.5, threshold)
    high = max(curve["threshold"].iloc[-1], 0.5, threshold)
    margin = max(0.02, 0.08 * (high - low))
    axis.set(xlim=(max(0.0, low - margin), min(1.0, high + margin)), ylim=(0, 1.05))
    axis.set_xlabel("threshold", fontsize=9)
    axis.tick_params(labelsize=8)


def plot_threshold_curves(y_true, y_prob, classes, *, thresholds=None, ncols=4, ax=None,
                          **kwargs):
    """F1, precision and recall against the threshold, one panel per class, on the tuning data
    (usually validation); ``thresholds`` marked (default: ``evaluation.tune_thresholds``)."""
    truth, probabilities = np.asarray(y_true), np.asarray(y_prob, dtype=float)
    if thresholds is None:
        thresholds = evaluation.tune_thresholds(truth, probabilities, classes=classes)
    at_half = evaluation.classification_table(truth, probabilities, classes)
    at_tuned = evaluation.classification_table(truth, probabilities, classes, thresholds)
    thresholds = at_tuned["threshold"].to_numpy()
    flat, figure = _panels(len(at_half), ncols, ax, (3.2, 2.8),
                           "F1, precision and recall against the threshold")
    with_legend = None
    for index, (axis, label) in enumerate(zip(flat, at_half.index)):
        curve = evaluation.threshold_curve(truth[:, index], probabilities[:, index])
        if curve.empty:
            axis.set(xlim=(0, 1), ylim=(0, 1.05))
            _show(axis, f"no positive example:\nthreshold stays {thresholds[index]:.2f}")
            axis.set_title(label, fontsize=10)
            continue
        _threshold_panel(axis, curve, thresholds[index], kwargs)
        axis.set_title(f"{label}\nF1 {at_half['f1'].iloc[index]:.2f} at 0.5 → "
                       f"{at_tuned['f1'].iloc[index]:.2f} at {thresholds[index]:.2f}", fontsize=10)
        with_legend = with_legend or axis
    if with_legend is not None:
        with_legend.legend(fontsize=7, loc="best")
    return Display(flat, figure)


def plot_error_gallery(filenames, y_true, y_prob, classes, *, kind="false_positive", n=8,
                       thresholds=0.5, ncols=4, ax=None, **kwargs):
    """The ``n`` surest mistakes of ``evaluation.worst_errors``, on their images (``filenames``)."""
    filenames, probabilities = list(filenames), np.asarray(y_prob, dtype=float)
    if len(filenames) != len(probabilities):
        raise ValueError(f"filenames: expected {len(probabilities)} paths (one per row of "
                         f"y_true), got {len(filenames)}")
    errors = evaluation.worst_errors(y_true, probabilities, classes, kind=kind, n=n,
                                     thresholds=thresholds)
    false_positive = kind == "false_positive"
    flat, figure = _panels(len(errors), ncols, ax, (3.0, 3.6), "Most confident false positives"
                           if false_positive else "Most confidently missed labels "
                           "(false negatives)")
    if errors.empty:
        _show(flat[0], f"no {kind.replace('_', ' ')} at these thresholds")
        return Display(flat, figure)
    column_of = {label: index for index, label in enumerate(classes)}
    for axis, error in zip(flat, errors.itertuples()):
        row = probabilities[error.sample]
        # a no-break space keeps each label next to its probability when the title wraps
        predicted = ", ".join(f"{label}\u00a0{row[column_of[label]]:.2f}"
                              for label in error.predicted_labels) or "(nothing)"
        _show(axis, load_image(filenames[error.sample]), **kwargs)
        _caption(axis, f"{'false positive' if false_positive else 'missed'}: {error.label} "
                       f"{error.probability:.2f}\n"
                       f"{_labels_text(error.true_labels, 34, 2, 'true: ')}\n"
                       f"{_labels_text(predicted, 34, 2, 'pred: ')}", fontsize=8, loc="left")
    return Display(flat, figure)


def plot_error_pairs(y_true, y_pred, classes, *, kind="false_positive", normalize=False,
                     ax=None, annot=None, **kwargs):
    """Heatmap of ``helpers.evaluation.error_pairs``; ``normalize``: shares of each row's errors."""
    pairs = evaluation.error_pairs(y_true, y_pred, classes, kind=kind)
    errors_per_label = evaluation.error_counts(y_true, y_pred, kind=kind)
    values = pairs.astype(float)
    values.index = pd.Index([f"{label} ({count})" for label, count in zip(
        pairs.index, errors_per_label)], name=f"{pairs.index.name} (errors)")
    ax = _label_heatmap(values, ax, annot, errors_per_label if normalize else None,
                        "share of the row's errors" if normalize else "images",
                        **{"cmap": "Blues" if kind == "false_positive" else "Oranges", **kwargs})
    ax.set_title("False positives: the true labels of those images" if kind == "false_positive"
                 else "False negatives: what was predicted instead")
    return Display(ax)


def _comparison_table(table, metric, x, hue):
    """A tidy table with the columns ``x`` and ``metric`` from a table or a dict of tables."""
    if isinstance(table, dict):
        for name, frame in table.items():
            _require_columns(frame, [metric], f"table[{name!r}]")
        table = pd.concat({str(name): frame[[metric]] for name, frame in table.items()},
                          names=[hue or "model", x]).reset_index()
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table: expected a DataFrame or a dict of DataFrames, got "
                         f"{type(table).__name__}")
    if x not in table.columns and x == table.index.name:
        table = table.reset_index()
    _require_columns(table, [x, metric], "table")
    return table.assign(**{metric: pd.to_numeric(table[metric], errors="coerce")})


def plot_metric_comparison(table, metric, *, x="class", hue="model", ax=None, annotate=True,
                           title=None, **kwargs):
    """Bars of ``metric`` per ``x`` grouped by ``hue`` (None: no groups), from a tidy table or a
    dict of tables indexed by ``x`` (``{"MLP": classification_table(...)}``, names as ``hue``)."""
    data = _comparison_table(table, metric, x, hue)
    hue = hue if hue in data.columns else None
    n_groups, n_hues = data[x].nunique(), data[hue].nunique() if hue else 1
    ax = _one_ax(ax, (min(max(6.0, 1.2 + 0.45 * n_groups * n_hues + 0.3 * n_groups), 16), 4.2))
    options = {"palette": "Set2"} if hue else {"color": sns.color_palette()[0]}
    sns.barplot(data=data, x=x, y=metric, hue=hue, ax=ax, **{"errorbar": None, **options, **kwargs})
    if annotate and n_groups * n_hues <= 40:
        for container in ax.containers:
            ax.bar_label(container, labels=["" if np.isnan(value) else f"{value:.2f}"
                                            for value in container.datavalues],
                         fontsize=7, padding=1, rotation=90 if n_hues > 2 else 0)
    if data[metric].max() <= 1:  # False when every value is missing
        ax.set_ylim(0, 1.12)
    ax.set(xlabel=x, ylabel=metric.replace("_", " "),
           title=title or f"{metric.replace('_', ' ')} by {x}")
    ax.grid(axis="x", visible=False)
    _slant_x(ax, only_if_crowded=True)
    if hue:
        _legend_outside(ax, title=hue, fontsize=8, title_fontsize=9)
    return Display(ax)


# --------------------------------------------------------------------------- explanations
_OUTCOMES = ("true_positive", "false_positive", "false_negative")


def _draw_heatmap(ax, image, heatmap, peak=None, **kwargs):
    """The image with the heatmap stretched over it (bilinear) and the peak marked."""
    height, width = image.shape[:2]
    _show(ax, image)
    if heatmap is not None:
        ax.imshow(np.asarray(heatmap, dtype=float), extent=(-0.5, width - 0.5, height - 0.5, -0.5),
                  **{"cmap": "jet", "alpha": 0.45, "interpolation": "bilinear", "vmin": 0.0,
                     "vmax": 1.0, **kwargs})
    if peak is not None and np.all(np.isfinite(peak)):
        for color, size, edge in (("white", 14, 2.5), ("black", 9, 1.2)):
            ax.plot(peak[1] * width - 0.5, peak[0] * height - 0.5, marker="+", color=color,
                    markersize=size, markeredgewidth=edge)
    ax.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5))


def _draw_boxes(ax, boxes, height, width, label=None):
    """Rectangles of ``boxes`` (fractions); the boxes of ``label`` solid, the others dashed."""
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
                         ncols=4, ax=None, **kwargs):
    """An image (an array or a path), then a panel per label with its heatmap (``(k, h, w)`` in
    [0, 1]) over the image, its peak (``(y, x)`` fractions) crossed, its probability in the
    title; ``boxes`` (``helpers.explain.box_fractions``): a label's own solid, others dashed."""
    picture = as_image(image)
    if picture is None:
        raise ValueError(f"image: cannot read {image}")
    maps = np.asarray(heatmaps, dtype=float)
    maps = maps[None] if maps.ndim == 2 else maps
    labels = [labels] if isinstance(labels, str) else [str(label) for label in labels]
    if maps.ndim != 3 or len(maps) != len(labels):
        raise ValueError(f"heatmaps and labels: expected one (h, w) map per label, got "
                         f"{maps.shape} for {len(labels)} labels")
    peaks = [None] * len(labels) if peaks is None else \
        np.asarray(peaks, dtype=float).reshape(len(labels), 2)
    flat, figure = _panels(len(labels) + 1, ncols, ax, (2.8, 3.0))
    height, width = picture.shape[:2]
    _show(flat[0], picture)
    _caption(flat[0], "image")
    for index, (axis, label) in enumerate(zip(flat[1:], labels)):
        _draw_heatmap(axis, picture, maps[index], peaks[index], **kwargs)
        title = label if probabilities is None else f"{label} {float(probabilities[index]):.2f}"
        _caption(axis, _labels_text(title, 30, 2))
    if boxes is not None:
        for axis, label in zip(flat, [None, *labels]):
            _draw_boxes(axis, boxes, height, width, label=label)
    return Display(flat, figure)


def _outcome_panel(axis, case, outcome, kwargs):
    """One case of the outcome gallery: its heatmap over the image, or why there is none."""
    if case is None:
        return _show(axis, f"no {outcome.replace('_', ' ')}")
    image = load_image(case.filename)
    if image is None:
        _show(axis, "unreadable image")
    else:
        _draw_heatmap(axis, image, case.heatmap, (case.peak_y, case.peak_x), **kwargs)
    empty = image is not None and not np.isfinite(case.peak_y)
    _caption(axis, f"{outcome.replace('_', ' ')} {case.probability:.2f}"
             + ("\n(empty map)" if empty else ""), fontsize=8)


def plot_outcome_gallery(cases, *, ax=None, **kwargs):
    """Where the model looked in ``helpers.explain.outcome_cases``, a row per label (a false
    negative's map: where it looked for the missed label; "(empty map)": no region raised it)."""
    _require_columns(cases, ["label", "outcome", "rank", "filename", "probability", "heatmap",
                             "peak_y", "peak_x"], "cases (helpers.explain.outcome_cases)")
    labels = list(dict.fromkeys(cases["label"]))
    per_kind = int(cases["rank"].max()) + 1 if len(cases) else 1
    columns = len(_OUTCOMES) * per_kind
    flat, figure = _panels(max(len(labels), 1) * columns, columns, ax, (2.0, 2.3),
                           "Where the model looks: surest true and false positives, worst misses")
    if not labels:
        _show(flat[0], "no case to show")
        return Display(flat, figure)
    found = {(row.label, row.outcome, int(row.rank)): row for row in cases.itertuples()}
    keys = [(label, outcome, rank) for label in labels for outcome in _OUTCOMES
            for rank in range(per_kind)]
    for axis, key in zip(flat, keys):
        _outcome_panel(axis, found.get(key), key[1], kwargs)
    for row, label in enumerate(labels):
        flat[row * columns].set_ylabel(label, fontsize=10)
    return Display(flat, figure)
