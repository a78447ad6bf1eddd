"""Write into each notebook the metadata JupyterLab's kernel writes when it opens one
(``kernelspec``, ``language_info``), so that opening a committed notebook changes nothing.

Usage: ``python tools/notebook_metadata.py [NOTEBOOK ...]`` (default: notebooks/0*.ipynb).
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_notebooks import NOTEBOOKS, kernel_metadata  # noqa: E402


def main(argv):
    kernelspec, language_info = kernel_metadata()
    for path in [Path(p) for p in argv] or NOTEBOOKS:
        text = path.read_text(encoding="utf-8")
        notebook = json.loads(text)
        notebook["metadata"].update(kernelspec=kernelspec, language_info=language_info)
        new = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
