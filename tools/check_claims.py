"""Check that an executed notebook's text states no figure its outputs do not show.

The notebooks must print every run-dependent figure (or phrase the text so that it holds
for any run). This checks the figures that can be checked mechanically:

- durations ("25 s", "3 minutes", and vague ones such as "a few minutes", which no output
  can confirm);
- epoch counts ("25 epochs");
- image counts ("1,360 images").

A figure in the text must also appear in some output of the notebook (same number,
thousands separators ignored). Sentences that cite a write-up, a paper or another dataset
("the clothing tutorial trained 150 epochs") or that speak of another kind of run ("a full
run", "in quick mode") state facts about something else and are left alone.

Usage: ``python tools/check_claims.py EXECUTED.ipynb ...``; exit status 1 when a claim has
no support, with one line per claim.
"""
import argparse
import json
import re
import sys
from pathlib import Path

NUMBER = r"(\d[\d,]*(?:\.\d+)?)"
CLAIMS = {
    "duration": re.compile(NUMBER + r"\s*(?:s|sec|seconds?|min|minutes?|hours?)\b"),
    "epochs": re.compile(NUMBER + r"\s+epochs?\b"),
    "images": re.compile(NUMBER + r"\s+(?:\w+\s+)?images\b"),
}
VAGUE_DURATION = re.compile(
    r"\b(?:a few|several|a couple of|about (?:a|an|one|two|five|ten)) (?:seconds|minutes|hours)\b"
    r"|\ba minute or two\b|\bin minutes\b", re.IGNORECASE)
# A sentence about another source or another kind of run is not a claim about these outputs.
ELSEWHERE = re.compile(
    r"tutorial|write-up|paper|question|Agundez|Rosebrock|Widholm|CheXNet|Wang et al|"
    r"ImageNet|VOC2012|ChestX-ray|full run|full mode|quick mode|quick run|make run|QUICK|"
    r"on a GPU|real cluster|per 1,000 images|for example|e\.g\.",
    re.IGNORECASE)
SENTENCE = re.compile(r"(?<=[.!?:])\s+(?=[A-Z`*(])|\n\s*[-*\d]+[.)]?\s+|\n\n")


def _text(source):
    return "".join(source) if isinstance(source, list) else source


def _output_text(notebook):
    pieces = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            pieces.append(_text(output.get("text", "")))
            for kind in ("text/plain", "text/html", "text/markdown"):
                pieces.append(_text(output.get("data", {}).get(kind, "")))
    return "\n".join(pieces)


def _numbers(text):
    return {_normal(match) for match in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}


def _normal(number):
    number = number.replace(",", "")
    return number[:-2] if number.endswith(".0") else number


def check(notebook):
    """Return ``(cell index, kind, text)`` of every claim the outputs do not support."""
    printed = _numbers(_output_text(notebook))
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = re.sub(r"`[^`]*`", " ", _text(cell["source"]))  # code is not prose
        for sentence in SENTENCE.split(text):
            if ELSEWHERE.search(sentence):
                continue
            for match in VAGUE_DURATION.finditer(sentence):
                problems.append((index, "duration", match.group(0)))
            for kind, pattern in CLAIMS.items():
                for match in pattern.finditer(sentence):
                    if _normal(match.group(1)) not in printed:
                        problems.append((index, kind, match.group(0)))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="executed .ipynb files")
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        for index, kind, claim in check(notebook):
            print(f"{path.name}: cell {index}: {kind} {claim!r} is not in any output")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
