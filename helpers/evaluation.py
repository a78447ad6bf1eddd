"""Evaluate predictions: per-class metrics, averages, thresholds, curves, error tables.

Everything starts from two arrays of shape ``(n_samples, n_classes)``: the multi-hot truth
(0/1) and the predicted probabilities (one sigmoid per class, or a softmax for a multi-class
model). Every metric scikit-learn has is computed by scikit-learn; this module only arranges
the calls, handles classes whose metric is undefined (a class with no positive, or no
negative, example), and shapes the results as DataFrames for notebooks and as JSON-able
dicts for the CLI. :func:`apply_thresholds` is the one way probabilities become decisions.

No TensorFlow here: evaluation works on NumPy arrays. ``helpers.predict`` makes the arrays
from a model folder (``predict_split``).
"""

import numpy as np
import pandas as pd
from sklearn import metrics

from helpers import warn
from helpers.files.fileio import to_jsonable
from helpers.labels import check_task

AVERAGES = ("micro", "macro", "weighted", "samples")
THRESHOLD_AVERAGES = ("micro", "macro", "weighted")
OBJECTIVES = ("f1", "precision", "recall")
ERROR_KINDS = ("false_positive", "false_negative")
DEFAULT_THRESHOLD = 0.5


# --------------------------------------------------------------------------- input checks
def _as_matrix(array, name):
    matrix = np.asarray(array)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (n_samples, n_classes), got shape {matrix.shape}"
        )
    return matrix


def _check_truth(y_true, name="y_true"):
    truth = _as_matrix(y_true, name)
    if truth.size and not np.isin(truth, (0, 1)).all():
        bad = np.unique(truth[~np.isin(truth, (0, 1))])[:5]
        raise ValueError(f"{name}: expected a multi-hot matrix of 0 and 1, found values {bad}")
    return truth.astype(int)


def _check_probabilities(y_prob, name="y_prob"):
    probabilities = _as_matrix(y_prob, name).astype(float)
    if not np.isfinite(probabilities).all():
        raise ValueError(f"{name}: expected finite probabilities, found NaN or infinity")
    return probabilities


def _check_pair(y_true, y_other, other_name, classes=None):
    truth = _check_truth(y_true)
    if other_name == "y_pred":
        other = _check_truth(y_other, "y_pred (use apply_thresholds on probabilities first)")
    else:
        other = _check_probabilities(y_other, other_name)
    if truth.shape != other.shape:
        raise ValueError(
            f"y_true and {other_name}: expected the same shape, got {truth.shape} and {other.shape}"
        )
    if classes is not None:
        classes = [str(label) for label in classes]
        if len(classes) != truth.shape[1]:
            raise ValueError(
                f"classes: expected {truth.shape[1]} names (one per column of y_true), "
                f"got {len(classes)}"
            )
    return truth, other, classes


def _check_thresholds(thresholds, n_classes):
    values = np.asarray(thresholds, dtype=float)
    if values.ndim == 0:
        values = np.full(n_classes, float(values))
    if values.shape != (n_classes,):
        raise ValueError(
            f"thresholds: expected one number or {n_classes} numbers (one per class), "
            f"got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError("thresholds: expected finite numbers, found NaN or infinity")
    return values


def undefined_reason(column):
    """Say why threshold-free metrics are undefined for one class, or return None.

    Parameters
    ----------
    column : array-like of 0/1
        The truth of one class over all samples.

    Returns
    -------
    str or None
        ``"no positive example"`` / ``"no negative example"``, or None when both occur.
    """
    column = np.asarray(column)
    if not column.any():
        return "no positive example"
    if column.all():
        return "no negative example"
    return None


# --------------------------------------------------------------------------- thresholds
def apply_thresholds(y_prob, thresholds=DEFAULT_THRESHOLD, task="multi_label"):
    """Turn probabilities into 0/1 decisions: ``prob >= threshold`` per class, or the argmax.

    Parameters
    ----------
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    thresholds : float or array-like (n_classes,), default=0.5
        One threshold for every class, or one per class (multi-label).
    task : {"multi_label", "multi_class"}, default="multi_label"
        A multi-class model decides for its most probable class (``thresholds`` unused).

    Returns
    -------
    np.ndarray of int, shape (n_samples, n_classes)
    """
    probabilities = _check_probabilities(y_prob)
    if check_task(task) == "multi_class":
        decisions = np.zeros(probabilities.shape, dtype=int)
        decisions[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = 1
        return decisions
    values = _check_thresholds(thresholds, probabilities.shape[1])
    return (probabilities >= values).astype(int)


def as_multi_hot(y_true, n_classes):
    """Class indices ``(n,)`` or one-hot/multi-hot rows ``(n, n_classes)`` as 0/1 rows.

    Parameters
    ----------
    y_true : array-like
    n_classes : int

    Returns
    -------
    np.ndarray of int, shape (n, n_classes)
    """
    y_true = np.asarray(y_true)
    if y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1 and n_classes > 1):
        return np.eye(n_classes, dtype=int)[y_true.reshape(-1).astype(int)]
    return (y_true >= 0.5).astype(int)


def threshold_metrics(y_true, y_prob, task="multi_label", thresholds=DEFAULT_THRESHOLD, prefix=""):
    """Precision, recall and F1 (micro, macro, weighted) of the decisions, as flat keys.

    What ``helpers.training.MetricsCallback`` writes into the Keras logs each epoch.

    Parameters
    ----------
    y_true : array-like (n, n_classes) multi-hot, or (n,) class indices
    y_prob : array-like (n, n_classes)
    task : {"multi_label", "multi_class"}
    thresholds : float or array-like (n_classes,)
    prefix : str
        Put in front of every key, e.g. ``"val_"``.

    Returns
    -------
    dict like ``{"val_f1_micro": 0.91, "val_precision_micro": ..., ...}``
    """
    probabilities = _check_probabilities(y_prob)
    truth = as_multi_hot(y_true, probabilities.shape[1])
    decisions = apply_thresholds(probabilities, thresholds, task)
    values = {}
    for average in THRESHOLD_AVERAGES:
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            truth, decisions, average=average, zero_division=0)
        values[f"{prefix}f1_{average}"] = float(f1)
        values[f"{prefix}precision_{average}"] = float(precision)
        values[f"{prefix}recall_{average}"] = float(recall)
    return values


def threshold_curve(y_true, y_prob):
    """Precision, recall and F1 of one class at every threshold worth trying.

    Parameters
    ----------
    y_true : array-like (n_samples,)
        Truth of one class (0/1).
    y_prob : array-like (n_samples,)
        Probabilities of that class.

    Returns
    -------
    pd.DataFrame
        Columns ``threshold``, ``precision``, ``recall``, ``f1``, one row per distinct
        probability (ascending); a sample is positive when ``prob >= threshold``. Empty when
        the class has no positive example.
    """
    truth = np.asarray(y_true).ravel()
    scores = np.asarray(y_prob, dtype=float).ravel()
    if truth.shape != scores.shape:
        raise ValueError(
            f"y_true and y_prob: expected one value per sample each, got {truth.shape} and "
            f"{scores.shape}"
        )
    if not truth.any():
        return pd.DataFrame(columns=["threshold", "precision", "recall", "f1"], dtype=float)
    precision, recall, thresholds = metrics.precision_recall_curve(truth, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator),
                   where=denominator > 0)
    return pd.DataFrame({"threshold": thresholds, "precision": precision, "recall": recall,
                         "f1": f1})


def _between(scores, threshold):
    """Midway between ``threshold`` and the next lower score: same predictions, more margin."""
    lower = scores[scores < threshold]
    if lower.size == 0:
        return float(threshold)
    middle = (lower.max() + threshold) / 2
    return float(middle if lower.max() < middle <= threshold else threshold)


def tune_thresholds(y_true, y_prob, objective="f1", target=None, default=DEFAULT_THRESHOLD,
                    classes=None, min_precision=None):
    """Find each class's best threshold on validation data (the raw optimum; see below).

    The best threshold on a few validation images is often a poor one to keep: for a class
    the model has not learnt, the best F1 is "predict it on every image". Use
    :func:`choose_thresholds` to keep only the thresholds that help.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth of the validation samples.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities for the same samples.
    objective : {"f1", "precision", "recall"}, default="f1"
        ``"f1"`` maximises each class's F1. ``"precision"`` takes the lowest threshold whose
        precision reaches ``target`` (the most recall at that precision). ``"recall"`` takes the
        highest threshold whose recall stays at or above ``target`` (the most precision).
    target : float in (0, 1], optional
        Required for ``"precision"`` and ``"recall"``.
    default : float, default=0.5
        Threshold kept by classes without a positive example.
    classes : list of str, optional
        Class names, used in warnings.
    min_precision : float in (0, 1], optional
        With ``objective="f1"``: the best F1 among the thresholds whose precision reaches
        this (a class where none does keeps ``default``, with a warning).

    Returns
    -------
    np.ndarray of float, shape (n_classes,)
        Thresholds to use with :func:`apply_thresholds`. A chosen threshold lies midway
        between the lowest score it accepts and the next lower score, so the predictions on
        the tuning data are those of the best threshold, with some margin for new data.
    """
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    names = classes or [f"column {column}" for column in range(truth.shape[1])]
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
    if objective == "f1" and target is not None:
        raise ValueError("target: only used with objective='precision' or 'recall', "
                         f"got target={target!r} with objective='f1'")
    if objective != "f1" and (target is None or not 0 < float(target) <= 1):
        raise ValueError(f"target: expected a number in (0, 1] for objective={objective!r}, "
                         f"got {target!r}")
    if min_precision is not None and (objective != "f1" or not 0 < float(min_precision) <= 1):
        raise ValueError("min_precision: expected a number in (0, 1] with objective='f1', "
                         f"got {min_precision!r} with objective={objective!r}")

    thresholds = np.full(truth.shape[1], float(default))
    for column in range(truth.shape[1]):
        curve = threshold_curve(truth[:, column], probabilities[:, column])
        if curve.empty:
            continue
        if objective == "f1":
            f1 = curve["f1"].to_numpy()
            if min_precision is not None:
                f1 = np.where(curve["precision"].to_numpy() >= min_precision, f1, -1.0)
                if f1.max() < 0:
                    warn(f"{names[column]}: no threshold reaches precision {min_precision}; "
                         f"keeping {default}")
                    continue
            best = int(f1.argmax())
        elif objective == "precision":
            reached = np.flatnonzero(curve["precision"].to_numpy() >= target)
            if reached.size:
                best = int(reached[0])
            else:
                best = int(curve["precision"].to_numpy().argmax())
                warn(f"{names[column]}: no threshold reaches precision {target}; "
                              f"using the most precise one "
                              f"({curve['precision'].iloc[best]:.3f})")
        else:
            kept = np.flatnonzero(curve["recall"].to_numpy() >= target)
            best = int(kept[-1])  # the lowest threshold has recall 1, so `kept` is never empty
        thresholds[column] = _between(probabilities[:, column], curve["threshold"].iloc[best])
    return thresholds


# Bootstrap resamples of the validation images, to tell a gain from noise.
N_BOOTSTRAP = 300


def _f1(truth, predictions, axis=0):
    """F1 along ``axis`` of boolean arrays (0 where it is undefined)."""
    tp = (truth & predictions).sum(axis)
    errors = (truth ^ predictions).sum(axis)
    denominator = 2 * tp + errors
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(denominator)),
                     where=denominator > 0)


def _overall(truth, predictions):
    """Micro-F1 and subset accuracy, over the last two axes (samples, classes)."""
    micro = _f1(truth, predictions, axis=(-2, -1))
    subset = (truth == predictions).all(axis=-1).mean(axis=-1)
    return micro, subset


def choose_thresholds(y_true, y_prob, classes=None, objective="f1", target=None,
                      min_precision=None, default=DEFAULT_THRESHOLD, max_share=2.0,
                      n_bootstrap=N_BOOTSTRAP, seed=0):
    """Tune one threshold per class on validation data, and keep it only where it helps.

    The best threshold of each class (:func:`tune_thresholds`) replaces ``default`` only when

    1. it does not predict the class on every validation image ("always yes");
    2. it predicts the class on at most ``max_share`` times the class's prevalence, plus two
       standard errors of that prevalence, ``2 * sqrt(p (1 - p) / n)`` (more is flooding
       the class: a real detector predicts a class about as often as it occurs);
    3. its F1 beats both the F1 at ``default`` and the F1 of "always yes",
       ``2p / (1 + p)``, by more than the noise: twice the standard deviation of that gain
       over bootstrap resamples of the validation images.

    Checks 2 and 3 apply to ``objective="f1"``; a precision or recall target is a trade-off
    you chose. Then, while the kept thresholds lower the validation micro-F1 or subset
    accuracy against ``default`` by more than their bootstrap noise, the kept class whose
    return to ``default`` helps most goes back to it.

    Parameters
    ----------
    y_true, y_prob : array-like (n_samples, n_classes)
        Validation truth and probabilities.
    classes : list of str, optional
        Class names (the table's index).
    objective, target, min_precision
        See :func:`tune_thresholds`.
    default : float, default=0.5
        The threshold a class keeps when tuning does not help.
    max_share : float, default=2.0
        See rule 2.
    n_bootstrap : int, default=300
        Bootstrap resamples for the noise.
    seed : int, default=0
        Seed of the resampling.

    Returns
    -------
    thresholds : np.ndarray of float, shape (n_classes,)
        The thresholds to use (and to save).
    table : pd.DataFrame
        One row per class: ``prevalence``, ``tuned`` (the best threshold), ``share_tuned``
        (share of the images it predicts the class on), ``f1_default``, ``f1_tuned``,
        ``f1_always_yes``, ``gain`` (``f1_tuned - f1_default``), ``noise`` (of the gain),
        ``threshold`` (what to use), ``kept`` and ``reason``. ``table.attrs`` holds the
        validation ``micro_f1`` and ``subset_accuracy`` at ``default`` and at the chosen
        thresholds, and the noise of their differences.
    """
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    names = classes or [f"column {column}" for column in range(truth.shape[1])]
    if not (isinstance(max_share, (int, float)) and max_share >= 1):
        raise ValueError(f"max_share: expected a number >= 1, got {max_share!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) \
            or n_bootstrap < 10:
        raise ValueError(f"n_bootstrap: expected an integer >= 10, got {n_bootstrap!r}")
    tuned = tune_thresholds(truth, probabilities, objective=objective, target=target,
                            default=default, classes=names, min_precision=min_precision)
    truth = truth.astype(bool)
    n_samples = len(truth)
    prevalence = truth.mean(axis=0)
    at_default = probabilities >= default
    at_tuned = probabilities >= tuned
    f1_default, f1_tuned = _f1(truth, at_default), _f1(truth, at_tuned)
    f1_always_yes = 2 * prevalence / (1 + prevalence)
    share = at_tuned.mean(axis=0)
    resamples = np.random.default_rng(seed).integers(0, n_samples, (n_bootstrap, n_samples))

    gain_noise = np.zeros(len(names))
    rows = []
    for column, name in enumerate(names):
        column_truth = truth[resamples, column]
        tuned_f1 = _f1(column_truth, at_tuned[resamples, column], axis=1)
        gain = tuned_f1 - _f1(column_truth, at_default[resamples, column], axis=1)
        resampled_prevalence = column_truth.mean(axis=1)
        over_yes = tuned_f1 - 2 * resampled_prevalence / (1 + resampled_prevalence)
        gain_noise[column] = 2 * gain.std()
        yes_noise = 2 * over_yes.std()
        ceiling = max_share * prevalence[column] + 2 * np.sqrt(
            prevalence[column] * (1 - prevalence[column]) / max(n_samples, 1))
        if not truth[:, column].any():
            reason = "no positive validation image"
        elif tuned[column] == default or (at_tuned[:, column] == at_default[:, column]).all():
            reason = f"the same decisions as {default} on the validation images"
        elif at_tuned[:, column].all():
            reason = "always yes: predicts the class on every validation image"
        elif objective == "f1" and share[column] > ceiling:
            reason = (f"floods the class: predicts it on {share[column]:.0%} of the images, "
                      f"prevalence {prevalence[column]:.0%}")
        elif objective == "f1" and f1_tuned[column] - f1_always_yes[column] <= yes_noise:
            reason = (f"no better than always yes (F1 {f1_tuned[column]:.2f} against "
                      f"{f1_always_yes[column]:.2f}, noise {yes_noise:.2f})")
        elif objective == "f1" and f1_tuned[column] - f1_default[column] <= gain_noise[column]:
            reason = (f"gain {f1_tuned[column] - f1_default[column]:+.2f} within the noise "
                      f"({gain_noise[column]:.2f})")
        else:
            reason = "kept"
        rows.append(reason)
    kept = np.array([reason == "kept" for reason in rows])
    chosen = np.where(kept, tuned, default)

    def differences(thresholds, indices=None):
        """Chosen minus default, micro-F1 and subset accuracy, on all images or resamples."""
        predictions = probabilities >= thresholds
        if indices is None:
            indices = np.arange(n_samples)[None]
        changes = []
        # A few resamples at a time keep the boolean copies small for large validation sets.
        for chunk in np.array_split(indices, max(1, indices.size * truth.shape[1] // 10**7 + 1)):
            chosen_micro, chosen_subset = _overall(truth[chunk], predictions[chunk])
            base_micro, base_subset = _overall(truth[chunk], at_default[chunk])
            changes.append((chosen_micro - base_micro, chosen_subset - base_subset))
        micro, subset = (np.concatenate([change[k] for change in changes]) for k in (0, 1))
        return (micro, subset) if len(micro) > 1 else (float(micro[0]), float(subset[0]))

    noise = (0.0, 0.0)
    while kept.any():
        resampled = differences(chosen, resamples)
        noise = (2 * resampled[0].std(), 2 * resampled[1].std())
        micro_change, subset_change = differences(chosen)
        if micro_change >= -noise[0] and subset_change >= -noise[1]:
            break
        candidates = []
        for column in np.flatnonzero(kept):
            trial = chosen.copy()
            trial[column] = default
            candidates.append((sum(differences(trial)), column))
        worst = max(candidates)[1]
        kept[worst], chosen[worst] = False, default
        which = "micro-F1" if micro_change < -noise[0] else "subset accuracy"
        rows[worst] = f"back to {default}: the tuned thresholds lowered the validation {which}"

    table = pd.DataFrame({
        "prevalence": prevalence, "tuned": tuned, "share_tuned": share,
        "f1_default": f1_default, "f1_tuned": f1_tuned, "f1_always_yes": f1_always_yes,
        "gain": f1_tuned - f1_default, "noise": gain_noise, "threshold": chosen,
        "kept": kept, "reason": rows,
    }, index=pd.Index(names, name="class"))
    base_micro, base_subset = _overall(truth, at_default)
    final_micro, final_subset = _overall(truth, probabilities >= chosen)
    table.attrs = {"micro_f1": {"default": float(base_micro), "chosen": float(final_micro)},
                   "subset_accuracy": {"default": float(base_subset), "chosen": float(final_subset)},
                   "noise": {"micro_f1": float(noise[0]), "subset_accuracy": float(noise[1])},
                   "default": float(default), "n_samples": int(n_samples)}
    return chosen, table


# --------------------------------------------------------------------------- metrics
def _threshold_free(truth, probabilities, classes):
    """Per-class average precision and ROC-AUC; NaN and a note where they are undefined."""
    average_precision = np.full(len(classes), np.nan)
    roc_auc = np.full(len(classes), np.nan)
    notes = [""] * len(classes)
    for column in range(len(classes)):
        reason = undefined_reason(truth[:, column])
        if reason:
            notes[column] = f"{reason} in y_true: average precision and ROC-AUC undefined"
            continue
        average_precision[column] = metrics.average_precision_score(
            truth[:, column], probabilities[:, column])
        roc_auc[column] = metrics.roc_auc_score(truth[:, column], probabilities[:, column])
    return average_precision, roc_auc, notes


def classification_table(y_true, y_prob, classes, thresholds=DEFAULT_THRESHOLD,
                         task="multi_label"):
    """Per-class precision, recall, F1, support, average precision and ROC-AUC.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    thresholds : float or array-like (n_classes,), default=0.5
        Thresholds turning probabilities into predictions.
    task : {"multi_label", "multi_class"}, default="multi_label"
        How probabilities become decisions (see :func:`apply_thresholds`); average precision
        and ROC-AUC always come from the probabilities.

    Returns
    -------
    pd.DataFrame
        Indexed by class: ``precision``, ``recall``, ``f1`` (0 when undefined, as in
        scikit-learn's ``classification_report`` with ``zero_division=0``), ``support``
        (positives in y_true), ``predicted`` (positives predicted), ``average_precision``,
        ``roc_auc`` (NaN when the class has a single truth value), ``threshold`` and ``note``
        (why a value is undefined or set to 0; empty otherwise).
    """
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    threshold_values = _check_thresholds(thresholds, truth.shape[1])
    predictions = apply_thresholds(probabilities, threshold_values, task)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predictions, average=None, zero_division=0)
    average_precision, roc_auc, notes = _threshold_free(truth, probabilities, classes)
    predicted = predictions.sum(axis=0)
    for column in range(len(classes)):
        if predicted[column] == 0 and support[column] > 0:
            extra = "nothing predicted: precision set to 0"
            notes[column] = f"{notes[column]}; {extra}" if notes[column] else extra
    table = pd.DataFrame({
        "precision": precision, "recall": recall, "f1": f1,
        "support": support.astype(int), "predicted": predicted.astype(int),
        "average_precision": average_precision, "roc_auc": roc_auc,
        "threshold": threshold_values, "note": notes,
    }, index=pd.Index(classes, name="class"))
    return table


def summary(y_true, y_prob, thresholds=DEFAULT_THRESHOLD, task="multi_label"):
    """Averaged metrics over all classes and samples.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    thresholds : float or array-like (n_classes,), default=0.5
        Thresholds turning probabilities into predictions.
    task : {"multi_label", "multi_class"}, default="multi_label"
        How probabilities become decisions (see :func:`apply_thresholds`).

    Returns
    -------
    dict
        ``{"micro"|"macro"|"weighted"|"samples": {"precision", "recall", "f1"}, ...}``;
        ``micro`` and ``macro`` also hold ``average_precision`` and ``roc_auc`` (macro over the
        classes where they are defined, NaN if none is). Top level: ``mAP`` (= macro average
        precision), ``subset_accuracy`` (every label of a sample right), ``hamming_loss``
        (share of wrong sample-label cells), ``n_samples``, ``n_classes``.
    """
    truth, probabilities, _ = _check_pair(y_true, y_prob, "y_prob")
    predictions = apply_thresholds(probabilities, thresholds, task)
    result = {}
    for average in AVERAGES:
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            truth, predictions, average=average, zero_division=0)
        result[average] = {"precision": float(precision), "recall": float(recall),
                           "f1": float(f1)}

    defined = [column for column in range(truth.shape[1])
               if undefined_reason(truth[:, column]) is None]
    macro_ap = macro_auc = float("nan")
    if defined:
        macro_ap = float(metrics.average_precision_score(
            truth[:, defined], probabilities[:, defined], average="macro"))
        macro_auc = float(metrics.roc_auc_score(
            truth[:, defined], probabilities[:, defined], average="macro"))
    micro_ap = micro_auc = float("nan")
    if undefined_reason(truth.ravel()) is None:
        micro_ap = float(metrics.average_precision_score(truth, probabilities, average="micro"))
        micro_auc = float(metrics.roc_auc_score(truth, probabilities, average="micro"))
    result["micro"].update(average_precision=micro_ap, roc_auc=micro_auc)
    result["macro"].update(average_precision=macro_ap, roc_auc=macro_auc)
    result["mAP"] = macro_ap
    result["subset_accuracy"] = float(metrics.accuracy_score(truth, predictions))
    result["hamming_loss"] = float(metrics.hamming_loss(truth, predictions))
    result["n_samples"] = int(truth.shape[0])
    result["n_classes"] = int(truth.shape[1])
    return result


def evaluation_report(y_true, y_prob, classes, thresholds=DEFAULT_THRESHOLD, task="multi_label"):
    """Everything :func:`classification_table` and :func:`summary` say, as a JSON-able dict.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    thresholds : float or array-like (n_classes,), default=0.5
        Thresholds turning probabilities into predictions.
    task : {"multi_label", "multi_class"}, default="multi_label"
        How probabilities become decisions (see :func:`apply_thresholds`).

    Returns
    -------
    dict
        ``{"per_class": {label: {"precision", "recall", "f1", "support", "predicted",
        "average_precision", "roc_auc", "note"}}, "micro": {...}, "macro": {...},
        "weighted": {...}, "samples": {...}, "mAP", "subset_accuracy", "hamming_loss",
        "n_samples", "n_classes", "thresholds": {label: float}}``; undefined values are None.
    """
    table = classification_table(y_true, y_prob, classes, thresholds, task)
    report = {"per_class": {
        label: {key: row[key] for key in ("precision", "recall", "f1", "support", "predicted",
                                           "average_precision", "roc_auc", "note")}
        for label, row in table.iterrows()
    }}
    report.update(summary(y_true, y_prob, table["threshold"].to_numpy(), task))
    report["thresholds"] = dict(zip(table.index, table["threshold"]))
    return to_jsonable(report)


# --------------------------------------------------------------------------- errors
def _mistakes(truth, predictions, kind):
    """Boolean matrix of the (sample, class) cells that are errors of ``kind``."""
    if kind not in ERROR_KINDS:
        raise ValueError(f"kind: expected one of {ERROR_KINDS}, got {kind!r}")
    if kind == "false_positive":
        return (predictions == 1) & (truth == 0)
    return (predictions == 0) & (truth == 1)


def _label_lists(matrix, classes):
    return [[classes[column] for column in np.flatnonzero(row)] for row in matrix]


def worst_errors(y_true, y_prob, classes, kind="false_positive", n=None,
                 thresholds=DEFAULT_THRESHOLD, one_per_sample=True):
    """The most confident mistakes of one kind, worst first.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    kind : {"false_positive", "false_negative"}, default="false_positive"
        False positives are sorted by descending probability (confidently wrong), false
        negatives by ascending probability (confidently missed).
    n : int, optional
        Keep at most this many rows.
    thresholds : float or array-like (n_classes,), default=0.5
        Thresholds turning probabilities into predictions.
    one_per_sample : bool, default=True
        Keep only the worst error of each sample.

    Returns
    -------
    pd.DataFrame
        Columns ``sample`` (row number), ``label``, ``probability``, ``true_labels``,
        ``predicted_labels`` (lists), one row per error.
    """
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    predictions = apply_thresholds(probabilities, thresholds)
    samples, columns = np.nonzero(_mistakes(truth, predictions, kind))
    scores = probabilities[samples, columns]
    order = np.argsort(-scores if kind == "false_positive" else scores, kind="stable")
    true_lists = _label_lists(truth, classes)
    predicted_lists = _label_lists(predictions, classes)
    errors = pd.DataFrame({
        "sample": samples[order],
        "label": [classes[column] for column in columns[order]],
        "probability": scores[order],
    })
    if one_per_sample:
        errors = errors.drop_duplicates("sample", keep="first")
    if n is not None:
        errors = errors.head(int(n))
    errors = errors.reset_index(drop=True)
    errors["true_labels"] = [true_lists[sample] for sample in errors["sample"]]
    errors["predicted_labels"] = [predicted_lists[sample] for sample in errors["sample"]]
    return errors


OUTCOMES = ("true_positive", "false_positive", "false_negative")


def outcome_examples(y_true, y_prob, classes, thresholds=DEFAULT_THRESHOLD, n=2, labels=None,
                     task="multi_label"):
    """The telling images of each class: its surest hits, surest false alarms and worst misses.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    thresholds : float or array-like (n_classes,), default=0.5
        Thresholds turning probabilities into predictions (see :func:`apply_thresholds`).
    n : int, default=2
        At most this many images per class and outcome.
    labels : list of str, optional
        The classes to look at, in this order; default: all of them.
    task : {"multi_label", "multi_class"}, default="multi_label"
        Passed to :func:`apply_thresholds`.

    Returns
    -------
    pd.DataFrame
        Columns ``label``, ``outcome`` (one of ``OUTCOMES``), ``rank`` (0 = the most telling),
        ``sample`` (row number) and ``probability`` of the label. True and false positives
        come by descending probability (surest first), false negatives by ascending
        probability (most confidently missed first).
    """
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    labels = list(classes) if labels is None else [str(label) for label in labels]
    unknown = [label for label in labels if label not in classes]
    if unknown:
        raise ValueError(f"labels: {unknown} are not among the classes {classes}")
    predictions = apply_thresholds(probabilities, thresholds, task)
    rows = []
    for label in labels:
        column = classes.index(label)
        truth_column, predicted, scores = truth[:, column], predictions[:, column], \
            probabilities[:, column]
        for outcome, chosen, descending in (
                ("true_positive", (truth_column == 1) & (predicted == 1), True),
                ("false_positive", (truth_column == 0) & (predicted == 1), True),
                ("false_negative", (truth_column == 1) & (predicted == 0), False)):
            samples = np.flatnonzero(chosen)
            order = np.argsort(-scores[samples] if descending else scores[samples], kind="stable")
            for rank, sample in enumerate(samples[order][:int(n)]):
                rows.append((label, outcome, rank, int(sample), float(scores[sample])))
    return pd.DataFrame(rows, columns=["label", "outcome", "rank", "sample", "probability"])


NONE_COLUMN = "(none)"


def error_pairs(y_true, y_pred, classes, kind="false_positive"):
    """Count which other labels were present when a label was wrongly predicted or missed.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_pred : array-like (n_samples, n_classes)
        0/1 predictions (see :func:`apply_thresholds`).
    classes : list of str
        Class names, one per column.
    kind : {"false_positive", "false_negative"}, default="false_positive"
        For false positives, a row counts the **true** labels of the images where that label
        was predicted but absent (what the model confused it with). For false negatives, a row
        counts the **predicted** labels of the images where that label was missed (what the
        model saw instead).

    Returns
    -------
    pd.DataFrame
        Rows: the label in error; columns: the co-occurring labels plus ``"(none)"`` for images
        with no such label at all. Cell = number of images.
    """
    truth, predictions, classes = _check_pair(y_true, y_pred, "y_pred", classes)
    wrong = _mistakes(truth, predictions, kind)
    context = truth if kind == "false_positive" else predictions
    with_none = np.column_stack([context, ~context.any(axis=1)]).astype(int)
    counts = wrong.astype(int).T @ with_none
    return pd.DataFrame(counts, index=pd.Index(classes, name=kind.replace("_", " ")),
                        columns=pd.Index(list(classes) + [NONE_COLUMN],
                                         name="true label" if kind == "false_positive"
                                         else "predicted label"))


def error_counts(y_true, y_pred, kind="false_positive"):
    """Number of images with each label predicted but absent (or present but missed).

    Parameters
    ----------
    y_true, y_pred : array-like (n_samples, n_classes)
        Multi-hot truth and 0/1 predictions.
    kind : {"false_positive", "false_negative"}, default="false_positive"

    Returns
    -------
    np.ndarray of int, shape (n_classes,)
    """
    truth, predictions, _ = _check_pair(y_true, y_pred, "y_pred")
    return _mistakes(truth, predictions, kind).sum(axis=0).astype(int)


# --------------------------------------------------------------------------- for plots
def confusion_table(y_true, y_pred, classes):
    """One 2×2 confusion matrix per class, as counts, with its precision, recall and F1.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_pred : array-like (n_samples, n_classes)
        0/1 predictions (see :func:`apply_thresholds`).
    classes : list of str
        Class names, one per column.

    Returns
    -------
    pd.DataFrame
        Indexed by class: ``tn``, ``fp``, ``fn``, ``tp`` (scikit-learn's
        ``multilabel_confusion_matrix``), ``precision``, ``recall``, ``f1`` (0 when
        undefined) and ``support``.
    """
    truth, predictions, classes = _check_pair(y_true, y_pred, "y_pred", classes)
    matrices = metrics.multilabel_confusion_matrix(truth, predictions)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predictions, average=None, zero_division=0)
    return pd.DataFrame({
        "tn": matrices[:, 0, 0], "fp": matrices[:, 0, 1], "fn": matrices[:, 1, 0],
        "tp": matrices[:, 1, 1], "precision": precision, "recall": recall, "f1": f1,
        "support": support.astype(int),
    }, index=pd.Index(classes, name="class"))


CURVES = ("pr", "roc")


def class_curves(y_true, y_prob, classes, kind="pr", micro_average=False):
    """Precision-recall or ROC curve of every class, with its area and its chance level.

    Parameters
    ----------
    y_true : array-like (n_samples, n_classes)
        Multi-hot truth.
    y_prob : array-like (n_samples, n_classes)
        Predicted probabilities.
    classes : list of str
        Class names, one per column.
    kind : {"pr", "roc"}, default="pr"
        ``"pr"``: recall on x, precision on y, area = average precision, chance = the
        class's prevalence. ``"roc"``: false-positive rate on x, recall on y, area =
        ROC-AUC, chance = 0.5.
    micro_average : bool, default=False
        Add a ``"micro-average"`` entry: every (sample, class) decision pooled.

    Returns
    -------
    dict
        Class name → ``{"x", "y"}`` (arrays, ``None`` when undefined), ``"area"``,
        ``"chance"``, ``"prevalence"``, ``"support"`` and ``"note"`` (why the curve is
        undefined, or ``""``).
    """
    if kind not in CURVES:
        raise ValueError(f"kind: expected one of {CURVES}, got {kind!r}")
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    columns = [(label, truth[:, index], probabilities[:, index]) for index, label in enumerate(classes)]
    if micro_average:
        columns.append(("micro-average", truth.ravel(), probabilities.ravel()))
    curves = {}
    for label, column_truth, column_scores in columns:
        prevalence = float(column_truth.mean()) if column_truth.size else float("nan")
        entry = {"x": None, "y": None, "area": float("nan"),
                 "chance": prevalence if kind == "pr" else 0.5, "prevalence": prevalence,
                 "support": int(column_truth.sum()), "note": undefined_reason(column_truth) or ""}
        if not entry["note"]:
            if kind == "pr":
                precision, recall, _ = metrics.precision_recall_curve(column_truth, column_scores)
                entry.update(x=recall, y=precision,
                             area=float(metrics.average_precision_score(column_truth, column_scores)))
            else:
                false_positive_rate, recall, _ = metrics.roc_curve(column_truth, column_scores)
                entry.update(x=false_positive_rate, y=recall,
                             area=float(metrics.roc_auc_score(column_truth, column_scores)))
        curves[label] = entry
    return curves

