"""README.md's figures, from the committed full runs (docs/results/<method>/results.json).

    python scripts/readme_figures.py           # write the figures into README.md
    python scripts/readme_figures.py --check   # exit 1, naming the blocks, where README.md disagrees

The README's figure-bearing text is kept in scripts/readme_figures.md as blocks with ``{method.name}``
placeholders; the figures are :mod:`genlab.experiments.figures`' formatting of the JSONs. A block
matches the README text that has its words with anything (on one line, no ``|``) where its
placeholders stand, so a stale figure is found and replaced; changed words are an error to fix in
the template. tests/test_readme_figures.py runs the check.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from genlab.experiments.figures import FIGURES, figures

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEMPLATES = Path(__file__).with_name("readme_figures.md")
PLACEHOLDER = re.compile(r"\{(\w+)\.(\w+)\}")


def templates(text: str | None = None) -> dict[str, str]:
    """``{block name: template}`` from the ``=== name ===`` sections of readme_figures.md."""
    parts = re.split(r"^=== ([\w-]+) ===\n", TEMPLATES.read_text() if text is None else text, flags=re.M)
    return {name: body.rstrip("\n") for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def all_figures(results_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """Every method's figures; an error where a committed results.json is missing."""
    found = {method: figures(method, results_dir) for method in FIGURES}
    missing = [method for method, values in found.items() if values is None]
    if missing:
        raise FileNotFoundError(f"no results.json for {', '.join(missing)} under {results_dir or 'docs/results'}")
    return found


def render(template: str, values: dict[str, dict[str, str]]) -> str:
    """The template with every ``{method.name}`` replaced by that figure."""
    return PLACEHOLDER.sub(lambda match: values[match[1]][match[2]], template)


def pattern(template: str) -> re.Pattern[str]:
    """A regular expression for the template's text with any figures in its placeholders' places."""
    pieces, last = [], 0
    for match in PLACEHOLDER.finditer(template):
        pieces += [re.escape(template[last:match.start()]), r"[^\n|]+?"]
        last = match.end()
    return re.compile("".join([*pieces, re.escape(template[last:])]))


def regenerate(readme: str, values: dict[str, dict[str, str]],
               blocks: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """``readme`` with every block's figures filled in, and the problems: blocks whose words are not found
    exactly once (their text changed; edit the template) and blocks whose figures disagreed (now replaced)."""
    problems = []
    for name, template in (blocks or templates()).items():
        matches = list(pattern(template).finditer(readme))
        if len(matches) != 1:
            problems.append(f"{name}: the template's text stands {len(matches)} times in README.md, not once")
            continue
        expected = render(template, values)
        if matches[0][0] != expected:
            problems.append(f"{name}: figures differ from the results.json")
            readme = readme[: matches[0].start()] + expected + readme[matches[0].end():]
    return readme, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 where README.md disagrees")
    args = parser.parse_args(argv)
    text = README.read_text()
    updated, problems = regenerate(text, all_figures())
    for problem in problems:
        print(problem)
    if not args.check and updated != text:
        README.write_text(updated)
        print(f"wrote {README}")
    unfixable = [p for p in problems if "figures differ" not in p]
    return 1 if unfixable or (args.check and problems) else 0


if __name__ == "__main__":
    sys.exit(main())
