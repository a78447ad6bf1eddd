"""``helpers duplicates SOURCE``: the groups of images that show the same picture.

Byte-identical files and near copies (re-encoded, resized, cropped a little, brighter or
darker), found by ``helpers.scan.find_copies``; a mirror image only with ``--mirror``.
``--format json`` prints ``{"groups": [[path, ...], ...], "labels_differ": [...],
"identical": [...], "pairs_checked": N, ...}`` with the paths as the loaders give them.
"""
from helpers.files.copies import MAX_DISTANCE
from helpers.files.fileio import printable

_ALLOW_COPIES_HELP = ("split without looking for copies: by default the copies of a picture "
                      "(helpers duplicates) are kept in one split, so that none is tested on "
                      "after being trained on")


def add_duplicates_options(parser):
    """The options of ``helpers duplicates``: a dataset, ``--mirror``, ``--max-distance``,
    ``--format``."""
    from helpers.app import cli

    cli._add_dataset_options(parser)
    parser.add_argument("--mirror", action="store_true",
                        help="count a mirror image (flipped left to right) as a copy too")
    parser.add_argument("--max-distance", type=int, default=MAX_DISTANCE,
                        help=f"bits (of 384) within which two hashes are copies, at most 96 "
                             f"(default {MAX_DISTANCE})")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def add_copies_option(parser):
    """``train``'s ``--allow-copies-across-splits`` (``TrainOptions.allow_copies_across_splits``)."""
    parser.add_argument("--allow-copies-across-splits", action="store_true", help=_ALLOW_COPIES_HELP)


def command_duplicates(args):
    """Print the groups of copies of a dataset, as a table or as JSON; exit code 0."""
    from helpers.app import cli
    from helpers.scale.shards import is_shard_frame
    from helpers.scan import find_copies

    dataframe = cli._load_from_args(args)
    if is_shard_frame(dataframe):
        raise ValueError(f"{printable(args.source)} holds shards; give the dataset they were "
                         "written from")
    report = find_copies(dataframe, max_distance=args.max_distance, mirror=args.mirror,
                         progress=args.format != "json")
    if args.format == "json":
        cli._print_json(report)
    else:
        _print_table(report, dict(zip(dataframe["filename"], dataframe["labels"])))
        print(_summary(report) + cli._skipped_note(dataframe))
    return 0


def _print_table(report, labels_of):
    """One block per group: what kind of copies, then each path with its labels."""
    for number, group in enumerate(report["groups"], start=1):
        kind = "byte-identical" if report["identical"][number - 1] else "near copies"
        differ = ", labels differ" if report["labels_differ"][number - 1] else ""
        print(f"group {number} ({len(group)} images, {kind}{differ}):")
        for path in group:
            print(f"  {printable(path)}  [{', '.join(map(str, labels_of.get(path, [])))}]")
    for item in report["unreadable"]:
        print(f"SKIP {printable(item['path'])}: {item['reason']}")


def _summary(report):
    n_images, n_hashed = report["n_images"], report["n_hashed"]
    in_groups = sum(map(len, report["groups"]))
    return (f"{len(report['groups'])} groups of copies ({in_groups} images, "
            f"{sum(report['labels_differ'])} with different labels) among {n_hashed} of "
            f"{n_images} images read; {report['pairs_checked']:,} hash comparisons instead of "
            f"{n_hashed * (n_hashed - 1) // 2:,}")
