"""Execute the notebooks in order into outputs/notebooks/ (executed .ipynb and .html).

Used by ``make run``. A notebook is executed again only when it, the helpers package
or an earlier notebook's output is newer than its own executed copy (``--force`` runs all).
Prints one line per notebook with its time, and the total.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from traitlets.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_claims  # noqa: E402  (tools/ is not a package)


def newest_mtime(paths):
    return max((path.stat().st_mtime for path in paths), default=0.0)


def execute(notebook_path, output_dir, timeout):
    notebook = nbformat.read(notebook_path, as_version=4)
    # IPC sockets: a kernel on TCP (the default) warns that anyone on the machine could listen.
    # They are named after the connection file, given as an absolute path because the kernel
    # starts in the notebook's folder. Given as configuration rather than a kernel manager of
    # our own, so that nbclient still shuts the kernel down.
    socket_dir = tempfile.mkdtemp(prefix="kernel-")
    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.connection_file = os.path.join(socket_dir, "kernel.json")
    client = NotebookClient(
        notebook,
        config=config,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook_path.parent)}},
    )
    executed_path = output_dir / notebook_path.name
    try:
        client.execute()
    except Exception:
        # Keep the partly executed copy under another name: it shows the failing cell,
        # and it must not pass for an up-to-date result on the next run.
        executed_path = executed_path.with_suffix(".failed.ipynb")
        raise
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        nbformat.write(notebook, executed_path)
        html, _ = HTMLExporter().from_notebook_node(notebook)
        executed_path.with_suffix(".html").write_text(html, encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook files (default: notebooks/0*.ipynb)")
    parser.add_argument("--output-dir", default=str(REPO_ROOT / "outputs" / "notebooks"))
    parser.add_argument("--force", action="store_true", help="execute even if up to date")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    args = parser.parse_args(argv)

    quick = os.environ.get("QUICK", "0") not in ("", "0")
    # The kernels inherit it: notebooks then write to outputs/full/ or outputs/quick/, never
    # over what an interactive session (outputs/interactive*/) made.
    os.environ["HELPERS_BATCH_RUN"] = "1"
    output_dir = Path(args.output_dir) / ("quick" if quick else "full")
    output_dir.mkdir(parents=True, exist_ok=True)
    notebooks = [Path(p).resolve() for p in args.notebooks] or sorted(NOTEBOOKS_DIR.glob("0*.ipynb"))
    if not notebooks:
        print(f"no notebooks found in {NOTEBOOKS_DIR}", file=sys.stderr)
        return 1

    helpers_mtime = newest_mtime((REPO_ROOT / "helpers").rglob("*.py"))
    print(f"executing {len(notebooks)} notebooks ({'quick' if quick else 'full'} mode) into {output_dir}")
    total_start = time.perf_counter()
    upstream_mtime = 0.0
    for notebook_path in notebooks:
        executed_path = output_dir / notebook_path.name
        inputs_mtime = max(notebook_path.stat().st_mtime, helpers_mtime, upstream_mtime)
        if not args.force and executed_path.exists() and executed_path.stat().st_mtime > inputs_mtime:
            print(f"{notebook_path.name:<28} up to date (kept {executed_path.relative_to(REPO_ROOT)})")
        else:
            start = time.perf_counter()
            try:
                execute(notebook_path, output_dir, args.timeout)
            except Exception as error:  # report which notebook failed, then stop
                seconds = time.perf_counter() - start
                print(f"{notebook_path.name:<28} FAILED after {seconds:6.1f} s: {type(error).__name__}")
                print(f"see {executed_path.with_suffix('.failed.html')} for the failing cell", file=sys.stderr)
                print(str(error)[-3000:], file=sys.stderr)
                return 1
            print(f"{notebook_path.name:<28} {time.perf_counter() - start:7.1f} s", flush=True)
            # Figures the text states that no output shows (tools/check_claims.py).
            for index, kind, claim in check_claims.check(json.loads(executed_path.read_text(encoding="utf-8"))):
                print(f"  warning: cell {index}: {kind} {claim!r} is not in any output")
        upstream_mtime = max(upstream_mtime, executed_path.stat().st_mtime)
    print(f"{'total':<28} {time.perf_counter() - total_start:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
