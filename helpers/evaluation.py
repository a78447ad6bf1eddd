"""Evaluate predictions: per-class metrics, averages, thresholds, curves, error tables.

Every metric comes from scikit-learn; this module handles the classes where one is undefined
(no positive, or no negative, example) and returns DataFrames for notebooks and JSON-able
dicts for the CLI. No TensorFlow: ``helpers.predict`` makes the arrays. Shared parameters:

- ``y_true``: multi-hot truth (0/1), shape ``(n_samples, n_classes)``;
- ``y_prob``: predicted probabilities of the same shape (sigmoids, or a softmax);
- ``y_pred``: 0/1 decisions from :func:`apply_thresholds`; ``classes``: one name per column;
- ``thresholds``: one for every class or one per class; positive when ``prob >= threshold``;
- ``task``: ``"multi_label"`` (thresholds) or ``"multi_class"`` (the most probable class);
- ``kind``: ``"false_positive"`` (predicted but absent) or ``"false_negative"`` (missed).
"""

import numpy as np
import pandas as pd
from sklearn import metrics

from helpers import warn
from helpers.files.fileio import to_jsonable
from helpers.labels import check_task

AVERAGES = ("micro", "macro", "weighted", "samples")
THRESHOLD_AVERAGES = ("micro", "macro", "weighted")
CURVES = ("pr", "roc")
DEFAULT_THRESHOLD = 0.5
_OBJECTIVES = ("f1", "precision", "recall")
_ERROR_KINDS = ("false_positive", "false_negative")
_OUTCOMES = ("true_positive", "false_positive", "false_negative")
_RANKING = {"average_precision": metrics.average_precision_score,
            "roc_auc": metrics.roc_auc_score}
# choose_thresholds' rules 2 and 3: the share ceiling and the bootstrap resamples.
_MAX_SHARE = 2.0
_N_BOOTSTRAP = 300


def _as_matrix(array, name="y_prob", binary=False):
    """``array`` as a checked 2-D matrix: of 0/1 integers if ``binary``, else finite floats."""
    matrix = np.asarray(array)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (n_samples, n_classes), got shape {matrix.shape}")
    if not binary:
        matrix = matrix.astype(float)
        if not np.isfinite(matrix).all():
            raise ValueError(f"{name}: expected finite probabilities, found NaN or infinity")
        return matrix
    if matrix.size and not np.isin(matrix, (0, 1)).all():
        bad = np.unique(matrix[~np.isin(matrix, (0, 1))])[:5]
        raise ValueError(f"{name}: expected a multi-hot matrix of 0 and 1, found values {bad}")
    return matrix.astype(int)


def _check_pair(y_true, y_other, other_name, classes=None):
    truth = _as_matrix(y_true, "y_true", binary=True)
    if other_name == "y_pred":
        name = "y_pred (use apply_thresholds on probabilities first)"
        other = _as_matrix(y_other, name, binary=True)
    else:
        other = _as_matrix(y_other, other_name)
    if truth.shape != other.shape:
        raise ValueError(f"y_true and {other_name}: expected the same shape, got {truth.shape} "
                         f"and {other.shape}")
    if classes is None:
        return truth, other, [f"column {column}" for column in range(truth.shape[1])]
    classes = [str(label) for label in classes]
    if len(classes) != truth.shape[1]:
        raise ValueError(f"classes: expected {truth.shape[1]} names (one per column of "
                         f"y_true), got {len(classes)}")
    return truth, other, classes


def _check_thresholds(thresholds, n_classes):
    values = np.asarray(thresholds, dtype=float)
    if values.ndim == 0:
        values = np.full(n_classes, float(values))
    if values.shape != (n_classes,):
        raise ValueError(f"thresholds: expected one number or {n_classes} numbers (one per "
                         f"class), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("thresholds: expected finite numbers, found NaN or infinity")
    return values


def _undefined_reason(column):
    """Why threshold-free metrics are undefined for one class's truth, or None."""
    column = np.asarray(column)
    if not column.any():
        return "no positive example"
    if column.all():
        return "no negative example"
    return None


def apply_thresholds(y_prob, thresholds=DEFAULT_THRESHOLD, task="multi_label"):
    """Turn probabilities into 0/1 decisions: ``prob >= threshold`` per class, or the argmax."""
    probabilities = _as_matrix(y_prob)
    if check_task(task) == "multi_class":
        return np.eye(probabilities.shape[1], dtype=int)[probabilities.argmax(axis=1)]
    values = _check_thresholds(thresholds, probabilities.shape[1])
    return (probabilities >= values).astype(int)


def threshold_metrics(y_true, y_prob, task="multi_label", thresholds=DEFAULT_THRESHOLD, prefix=""):
    """Precision, recall and F1 (micro, macro, weighted) as flat keys, e.g. ``val_f1_micro``."""
    probabilities = _as_matrix(y_prob)
    truth, n_classes = np.asarray(y_true), probabilities.shape[1]
    if truth.ndim == 1 or (truth.ndim == 2 and truth.shape[1] == 1 and n_classes > 1):
        truth = np.eye(n_classes)[truth.reshape(-1).astype(int)]  # class indices (n,)
    truth = (truth >= 0.5).astype(int)
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
    """Precision, recall and F1 of one class at each distinct probability (empty: no positive)."""
    truth = np.asarray(y_true).ravel()
    scores = np.asarray(y_prob, dtype=float).ravel()
    if truth.shape != scores.shape:
        raise ValueError(f"y_true and y_prob: expected one value per sample each, got "
                         f"{truth.shape} and {scores.shape}")
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


def _best_row(curve, objective, target, min_precision, name, default):
    """The row of ``curve`` that ``objective`` picks, or None to keep ``default``."""
    precision = curve["precision"].to_numpy()
    if objective == "f1":
        f1 = curve["f1"].to_numpy()
        if min_precision is not None:
            f1 = np.where(precision >= min_precision, f1, -1.0)
            if f1.max() < 0:
                warn(f"{name}: no threshold reaches precision {min_precision}; keeping {default}")
                return None
        return int(f1.argmax())
    if objective == "precision":
        reached = np.flatnonzero(precision >= target)
        if reached.size:
            return int(reached[0])
        best = int(precision.argmax())
        warn(f"{name}: no threshold reaches precision {target}; using the most precise one "
             f"({precision[best]:.3f})")
        return best
    # The lowest threshold has recall 1, so some threshold always keeps recall >= target.
    return int(np.flatnonzero(curve["recall"].to_numpy() >= target)[-1])


def tune_thresholds(y_true, y_prob, objective="f1", target=None, default=DEFAULT_THRESHOLD,
                    classes=None, min_precision=None):
    """Find each class's best threshold on validation data (the raw optimum).

    The raw optimum of a class the model has not learnt is often "always yes", which
    :func:`choose_thresholds` refuses. A threshold lies midway between the lowest score it
    accepts and the next lower one (a margin for new data); a class without a positive keeps
    ``default``.

    Parameters
    ----------
    objective : {"f1", "precision", "recall"}
        The best F1 (among the thresholds of precision ``min_precision`` or more, if given,
        else ``default`` with a warning); the lowest threshold whose precision reaches
        ``target``; or the highest whose recall stays at ``target`` or above.
    """
    truth, probabilities, names = _check_pair(y_true, y_prob, "y_prob", classes)
    if objective not in _OBJECTIVES:
        raise ValueError(f"objective: expected one of {_OBJECTIVES}, got {objective!r}")
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
        best = _best_row(curve, objective, target, min_precision, names[column], default)
        if best is not None:
            thresholds[column] = _between(probabilities[:, column], curve["threshold"].iloc[best])
    return thresholds


def _f1(truth, predictions, axis=0):
    """F1 along ``axis`` of boolean arrays (0 where it is undefined)."""
    tp = (truth & predictions).sum(axis)
    denominator = 2 * tp + (truth ^ predictions).sum(axis)
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(denominator)),
                     where=denominator > 0)


def _overall(truth, predictions):
    """Micro-F1 and subset accuracy, over the last two axes (samples, classes)."""
    micro = _f1(truth, predictions, axis=(-2, -1))
    subset = (truth == predictions).all(axis=-1).mean(axis=-1)
    return micro, subset


def choose_thresholds(y_true, y_prob, classes=None, min_precision=None, seed=0):
    """Tune one threshold per class on validation data, and keep it only where it helps.

    The best-F1 threshold of a class (:func:`tune_thresholds`) replaces 0.5 only when it

    1. does not predict the class on every validation image ("always yes");
    2. predicts it on at most twice its prevalence ``p`` plus two standard errors (more
       floods the class: a real detector predicts a class about as often as it occurs);
    3. beats both the F1 at 0.5 and that of "always yes", ``2p / (1 + p)``, by more than twice
       the standard deviation of the gain over bootstrap resamples (drawn with ``seed``).

    Then, while the kept thresholds lower the validation micro-F1 or subset accuracy beyond
    their bootstrap noise, the kept class whose return to 0.5 helps most goes back. Returns
    the thresholds and a table by class (``share_tuned``: share of the images predicted;
    ``noise``: of the gain; ``reason``: why a class keeps 0.5); ``table.attrs`` holds micro-F1
    and subset accuracy at 0.5 and chosen, and the noise of their differences.
    """
    truth, probabilities, names = _check_pair(y_true, y_prob, "y_prob", classes)
    tuned = tune_thresholds(truth, probabilities, classes=names, min_precision=min_precision)
    truth = truth.astype(bool)
    resamples = np.random.default_rng(seed).integers(0, len(truth), (_N_BOOTSTRAP, len(truth)))
    table = _class_statistics(truth, probabilities, tuned, resamples)
    reasons = [_reason(row) for row in table.itertuples()]
    kept = np.array([reason == "kept" for reason in reasons])
    chosen = np.where(kept, tuned, DEFAULT_THRESHOLD)
    noise = _restore_harmful(truth, probabilities, chosen, kept, reasons, resamples)
    table = table.loc[:, "prevalence":"noise"].assign(threshold=chosen, kept=kept, reason=reasons)
    table.index = pd.Index(names, name="class")
    base, final = (_overall(truth, probabilities >= values)
                   for values in (DEFAULT_THRESHOLD, chosen))
    table.attrs = {"micro_f1": {"default": float(base[0]), "chosen": float(final[0])},
                   "subset_accuracy": {"default": float(base[1]), "chosen": float(final[1])},
                   "noise": {"micro_f1": float(noise[0]), "subset_accuracy": float(noise[1])},
                   "default": float(DEFAULT_THRESHOLD), "n_samples": int(len(truth))}
    return chosen, table


def _class_statistics(truth, probabilities, tuned, resamples):
    """Per class: the F1s, their noise and the flags that :func:`_reason` reads."""
    prevalence = truth.mean(axis=0)
    at_default, at_tuned = probabilities >= DEFAULT_THRESHOLD, probabilities >= tuned
    f1_default, f1_tuned = _f1(truth, at_default), _f1(truth, at_tuned)
    gain_noise, yes_noise = _bootstrap_noise(truth, at_default, at_tuned, resamples)
    standard_error = np.sqrt(prevalence * (1 - prevalence) / max(len(truth), 1))
    return pd.DataFrame({
        "prevalence": prevalence, "tuned": tuned, "share_tuned": at_tuned.mean(axis=0),
        "f1_default": f1_default, "f1_tuned": f1_tuned,
        "f1_always_yes": 2 * prevalence / (1 + prevalence),
        "gain": f1_tuned - f1_default, "noise": gain_noise, "yes_noise": yes_noise,
        "ceiling": _MAX_SHARE * prevalence + 2 * standard_error,
        "has_positive": truth.any(axis=0), "always_yes": at_tuned.all(axis=0),
        "same": (tuned == DEFAULT_THRESHOLD) | (at_tuned == at_default).all(axis=0),
    })


def _bootstrap_noise(truth, at_default, at_tuned, resamples):
    """Twice the bootstrap standard deviation of the tuned F1 minus 0.5's and "always yes"'s."""
    gain_noise, yes_noise = np.zeros(truth.shape[1]), np.zeros(truth.shape[1])
    for column in range(truth.shape[1]):
        column_truth = truth[resamples, column]
        tuned_f1 = _f1(column_truth, at_tuned[resamples, column], axis=1)
        gain = tuned_f1 - _f1(column_truth, at_default[resamples, column], axis=1)
        prevalence = column_truth.mean(axis=1)
        gain_noise[column] = 2 * gain.std()
        yes_noise[column] = 2 * (tuned_f1 - 2 * prevalence / (1 + prevalence)).std()
    return gain_noise, yes_noise


def _reason(row):
    """Why one class keeps 0.5 (rules 1-3 of :func:`choose_thresholds`), or ``"kept"``."""
    if not row.has_positive:
        return "no positive validation image"
    if row.same:
        return f"the same decisions as {DEFAULT_THRESHOLD} on the validation images"
    if row.always_yes:
        return "always yes: predicts the class on every validation image"
    if row.share_tuned > row.ceiling:
        return (f"floods the class: predicts it on {row.share_tuned:.0%} of the images, "
                f"prevalence {row.prevalence:.0%}")
    if row.f1_tuned - row.f1_always_yes <= row.yes_noise:
        return (f"no better than always yes (F1 {row.f1_tuned:.2f} against "
                f"{row.f1_always_yes:.2f}, always-yes noise {row.yes_noise:.2f})")
    if row.gain <= row.noise:
        return f"gain {row.gain:+.2f} within the gain noise ({row.noise:.2f})"
    return "kept"


def _changes(truth, probabilities, thresholds, samples):
    """Micro-F1 and subset accuracy at ``thresholds`` minus at 0.5: two rows, one column per
    row of ``samples`` (sample indices)."""
    predictions, at_default = probabilities >= thresholds, probabilities >= DEFAULT_THRESHOLD
    changes = []
    # A few resamples at a time keep the boolean copies small for large validation sets.
    for chunk in np.array_split(samples, max(1, samples.size * truth.shape[1] // 10**7 + 1)):
        changes.append(np.subtract(_overall(truth[chunk], predictions[chunk]),
                                   _overall(truth[chunk], at_default[chunk])))
    return np.concatenate(changes, axis=1)


def _restore_harmful(truth, probabilities, chosen, kept, reasons, resamples):
    """Send kept classes back to 0.5 while they lower the validation scores; return the noise."""
    everything = np.arange(len(truth))[None]
    noise = np.zeros(2)
    while kept.any():
        noise = 2 * _changes(truth, probabilities, chosen, resamples).std(axis=1)
        micro, subset = _changes(truth, probabilities, chosen, everything)[:, 0]
        if micro >= -noise[0] and subset >= -noise[1]:
            break
        candidates = []
        for column in np.flatnonzero(kept):
            trial = np.where(np.arange(len(chosen)) == column, DEFAULT_THRESHOLD, chosen)
            candidates.append((_changes(truth, probabilities, trial, everything).sum(), column))
        worst = max(candidates)[1]
        kept[worst], chosen[worst] = False, DEFAULT_THRESHOLD
        which = "micro-F1" if micro < -noise[0] else "subset accuracy"
        reasons[worst] = (f"back to {DEFAULT_THRESHOLD}: the tuned thresholds lowered the "
                          f"validation {which}")
    return noise


def _threshold_free(truth, probabilities):
    """Per-class scores of ``_RANKING`` by name; NaN and a note where they are undefined."""
    scores = {name: np.full(truth.shape[1], np.nan) for name in _RANKING}
    notes = [""] * truth.shape[1]
    for column in range(truth.shape[1]):
        reason = _undefined_reason(truth[:, column])
        if reason:
            notes[column] = f"{reason} in y_true: average precision and ROC-AUC undefined"
            continue
        for name, score in _RANKING.items():
            scores[name][column] = score(truth[:, column], probabilities[:, column])
    return scores, notes


def classification_table(y_true, y_prob, classes, thresholds=DEFAULT_THRESHOLD,
                         task="multi_label"):
    """Per-class precision, recall, F1, support, average precision and ROC-AUC.

    Precision, recall and F1 are 0 when undefined (``zero_division=0``), the threshold-free
    scores NaN when the class has a single truth value; ``note`` says why.
    """
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    threshold_values = _check_thresholds(thresholds, truth.shape[1])
    predictions = apply_thresholds(probabilities, threshold_values, task)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predictions, average=None, zero_division=0)
    scores, notes = _threshold_free(truth, probabilities)
    predicted = predictions.sum(axis=0)
    for column in np.flatnonzero((predicted == 0) & (support > 0)):
        extra = "nothing predicted: precision set to 0"
        notes[column] = f"{notes[column]}; {extra}" if notes[column] else extra
    return pd.DataFrame({
        "precision": precision, "recall": recall, "f1": f1,
        "support": support.astype(int), "predicted": predicted.astype(int),
        **scores, "threshold": threshold_values, "note": notes,
    }, index=pd.Index(classes, name="class"))


def _ranking_averages(truth, probabilities):
    """Micro and macro average precision and ROC-AUC (macro over the defined classes)."""
    per_class, _ = _threshold_free(truth, probabilities)
    pooled = _undefined_reason(truth.ravel()) is None
    averages = {"micro": {}, "macro": {}}
    for name, score in _RANKING.items():
        defined = per_class[name][~np.isnan(per_class[name])]
        averages["macro"][name] = float(defined.mean()) if defined.size else float("nan")
        averages["micro"][name] = (float(score(truth, probabilities, average="micro"))
                                   if pooled else float("nan"))
    return averages


def summary(y_true, y_prob, thresholds=DEFAULT_THRESHOLD, task="multi_label"):
    """Averaged metrics over all classes and samples, as a dict.

    ``"micro"``, ``"macro"``, ``"weighted"``, ``"samples"``: precision, recall and F1, micro
    and macro also ``average_precision`` and ``roc_auc`` (NaN if no class defines them); then
    ``mAP`` (macro average precision), ``subset_accuracy`` (every label of a sample right),
    ``hamming_loss`` (share of wrong cells), ``n_samples`` and ``n_classes``.
    """
    truth, probabilities, _ = _check_pair(y_true, y_prob, "y_prob")
    predictions = apply_thresholds(probabilities, thresholds, task)
    result = {}
    for average in AVERAGES:
        scores = metrics.precision_recall_fscore_support(truth, predictions, average=average,
                                                         zero_division=0)
        result[average] = dict(zip(("precision", "recall", "f1"), map(float, scores[:3])))

    for average, values in _ranking_averages(truth, probabilities).items():
        result[average].update(values)
    result.update(mAP=result["macro"]["average_precision"],
                  subset_accuracy=float(metrics.accuracy_score(truth, predictions)),
                  hamming_loss=float(metrics.hamming_loss(truth, predictions)),
                  n_samples=int(truth.shape[0]), n_classes=int(truth.shape[1]))
    return result


def evaluation_report(y_true, y_prob, classes, thresholds=DEFAULT_THRESHOLD, task="multi_label"):
    """:func:`classification_table` (under ``"per_class"``), :func:`summary` and the
    ``"thresholds"`` per class, as a JSON-able dict with None for undefined values."""
    table = classification_table(y_true, y_prob, classes, thresholds, task)
    report = {"per_class": table.drop(columns="threshold").to_dict(orient="index")}
    report.update(summary(y_true, y_prob, table["threshold"].to_numpy(), task))
    report["thresholds"] = dict(zip(table.index, table["threshold"]))
    return to_jsonable(report)


def _mistakes(truth, predictions, kind):
    """Boolean matrix of the (sample, class) cells that are errors of ``kind``."""
    if kind not in _ERROR_KINDS:
        raise ValueError(f"kind: expected one of {_ERROR_KINDS}, got {kind!r}")
    if kind == "false_positive":
        return (predictions == 1) & (truth == 0)
    return (predictions == 0) & (truth == 1)


def worst_errors(y_true, y_prob, classes, kind="false_positive", n=None,
                 thresholds=DEFAULT_THRESHOLD, one_per_sample=True):
    """The most confident mistakes of one kind, worst first (at most ``n``; by default one per
    sample)."""
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    predictions = apply_thresholds(probabilities, thresholds)
    samples, columns = np.nonzero(_mistakes(truth, predictions, kind))
    scores = probabilities[samples, columns]
    order = np.argsort(-scores if kind == "false_positive" else scores, kind="stable")
    errors = pd.DataFrame({"sample": samples[order],
                           "label": [classes[column] for column in columns[order]],
                           "probability": scores[order]})
    if one_per_sample:
        errors = errors.drop_duplicates("sample", keep="first")
    if n is not None:
        errors = errors.head(int(n))
    errors = errors.reset_index(drop=True)
    for column, matrix in (("true_labels", truth), ("predicted_labels", predictions)):
        errors[column] = [[classes[index] for index in np.flatnonzero(matrix[sample])]
                          for sample in errors["sample"]]
    return errors


def outcome_examples(y_true, y_prob, classes, thresholds=DEFAULT_THRESHOLD, n=2, labels=None,
                     task="multi_label"):
    """Each class's ``n`` surest hits, surest false alarms and worst misses (rank 0: the surest)."""
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
        truth_column, predicted = truth[:, column], predictions[:, column]
        scores = probabilities[:, column]
        chosen = ((truth_column == 1) & (predicted == 1), (truth_column == 0) & (predicted == 1),
                  (truth_column == 1) & (predicted == 0))
        for outcome, mask, descending in zip(_OUTCOMES, chosen, (True, True, False)):
            samples = np.flatnonzero(mask)
            order = np.argsort(-scores[samples] if descending else scores[samples], kind="stable")
            for rank, sample in enumerate(samples[order][:int(n)]):
                rows.append((label, outcome, rank, int(sample), float(scores[sample])))
    return pd.DataFrame(rows, columns=["label", "outcome", "rank", "sample", "probability"])


def error_pairs(y_true, y_pred, classes, kind="false_positive"):
    """Count which other labels were present when a label was wrongly predicted or missed.

    A false positive counts the **true** labels of its images (what the model confused it
    with), a false negative the **predicted** ones (what it saw instead); ``"(none)"``: none.
    """
    truth, predictions, classes = _check_pair(y_true, y_pred, "y_pred", classes)
    wrong = _mistakes(truth, predictions, kind)
    context, name = ((truth, "true label") if kind == "false_positive"
                     else (predictions, "predicted label"))
    with_none = np.column_stack([context, ~context.any(axis=1)]).astype(int)
    return pd.DataFrame(wrong.astype(int).T @ with_none,
                        index=pd.Index(classes, name=kind.replace("_", " ")),
                        columns=pd.Index(list(classes) + ["(none)"], name=name))


def error_counts(y_true, y_pred, kind="false_positive"):
    """Number of images with each label predicted but absent (or present but missed)."""
    truth, predictions, _ = _check_pair(y_true, y_pred, "y_pred")
    return _mistakes(truth, predictions, kind).sum(axis=0).astype(int)


def confusion_table(y_true, y_pred, classes):
    """Per class: tn, fp, fn, tp, precision, recall, F1 (0 when undefined) and support."""


    truth, predictions, classes = _check_pair(y_true, y_pred, "y_pred", classes)
    matrices = metrics.multilabel_confusion_matrix(truth, predictions)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        truth, predictions, average=None, zero_division=0)
    return pd.DataFrame({
        "tn": matrices[:, 0, 0], "fp": matrices[:, 0, 1], "fn": matrices[:, 1, 0],
        "tp": matrices[:, 1, 1], "precision": precision, "recall": recall, "f1": f1,
        "support": support.astype(int),
    }, index=pd.Index(classes, name="class"))


def _curve(truth, scores, kind):
    """One class's curve entry of :func:`class_curves`."""
    prevalence = float(truth.mean()) if truth.size else float("nan")
    entry = {"x": None, "y": None, "area": float("nan"),
             "chance": prevalence if kind == "pr" else 0.5, "prevalence": prevalence,
             "support": int(truth.sum()), "note": _undefined_reason(truth) or ""}
    if entry["note"]:
        return entry
    if kind == "pr":  # recall on x, precision on y
        y, x, _ = metrics.precision_recall_curve(truth, scores)
    else:  # false-positive rate on x, recall on y
        x, y, _ = metrics.roc_curve(truth, scores)
    area = _RANKING["average_precision" if kind == "pr" else "roc_auc"](truth, scores)
    entry.update(x=x, y=y, area=float(area))
    return entry



def class_curves(y_true, y_prob, classes, kind="pr", micro_average=False):
    """Precision-recall (``kind="pr"``) or ROC curve of every class, its area and chance level.

    ``"pr"``: recall on x, precision on y, area = average precision, chance = prevalence;
    ``"roc"``: false-positive rate on x, recall on y, area = ROC-AUC, chance = 0.5.
    ``micro_average`` adds a ``"micro-average"`` entry; ``note`` says why x and y are None.
    """

    if kind not in CURVES:
        raise ValueError(f"kind: expected one of {CURVES}, got {kind!r}")
    truth, probabilities, classes = _check_pair(y_true, y_prob, "y_prob", classes)
    curves = {label: _curve(truth[:, index], probabilities[:, index], kind)
              for index, label in enumerate(classes)}
    if micro_average:
        curves["micro-average"] = _curve(truth.ravel(), probabilities.ravel(), kind)
    return curves
